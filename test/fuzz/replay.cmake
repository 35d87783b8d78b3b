# Replays each codec fuzzer's seed corpus as a plain CTest test, built with
# the ordinary compiler (gcc) and no libFuzzer: replay_main.c stands in for
# the fuzzing engine. Included from test/unit/codecs/tests.cmake.
function(troupe_add_fuzz_replay codec)
  set(dir ${PROJECT_SOURCE_DIR}/test/fuzz)
  add_executable(fuzz_replay_${codec} ${dir}/${codec}_fuzz.c ${dir}/replay_main.c
    ${dir}/fuzz_common.c)
  target_include_directories(fuzz_replay_${codec} PRIVATE ${dir})
  target_link_libraries(fuzz_replay_${codec} PRIVATE troupe_support troupe_static)
  add_test(NAME codecs_${codec}_corpus COMMAND fuzz_replay_${codec} ${dir}/corpus/${codec})
  set_tests_properties(codecs_${codec}_corpus PROPERTIES LABELS "unit;fuzz" TIMEOUT 300)
endfunction()

troupe_add_fuzz_replay(raw)
troupe_add_fuzz_replay(line)
troupe_add_fuzz_replay(length)
