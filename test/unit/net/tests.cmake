# Unit tests for net/ (no sockets).
troupe_add_test(net/embedded)
troupe_add_test(net/outq)
troupe_add_test(net/addr)
