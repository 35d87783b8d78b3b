troupe_add_test(codecs/raw)
troupe_add_test(codecs/line)
troupe_add_test(codecs/length)
# Each fuzzer's seed corpus, replayed as a plain test (gcc, no libFuzzer).
include(${PROJECT_SOURCE_DIR}/test/fuzz/replay.cmake)
