# Stress tests: each repeats a race for a bounded time (label "concurrency":
# also run under ThreadSanitizer in CI).
troupe_add_stest(runtime_stress concurrency)
troupe_add_stest(net_stress concurrency)
troupe_add_stest(multicast_stress concurrency)
