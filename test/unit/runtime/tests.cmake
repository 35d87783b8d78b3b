troupe_add_test(runtime/smoke concurrency)
