# Integration tests: real sockets on loopback (label "concurrency": also
# run under ThreadSanitizer in CI).
troupe_add_itest(echo concurrency)
troupe_add_itest(errors concurrency)
troupe_add_itest(backpressure concurrency)
troupe_add_itest(shutdown concurrency)
troupe_add_itest(client concurrency)
troupe_add_itest(admission concurrency)
troupe_add_itest(emfile concurrency)
troupe_add_itest(unix concurrency)
troupe_add_itest(options concurrency)
troupe_add_itest(dgram concurrency)
troupe_add_itest(bclient concurrency)
