# Replays each codec fuzzer's seed corpus as a plain CTest test, built with
# the ordinary compiler (gcc) and no libFuzzer: replay_main.c stands in for
# the fuzzing engine. Included from test/unit/codecs/tests.cmake.
# An optional second argument names the area (default "codecs"); the
# protocol layers' fuzzers ("proto") see net/proto's internal headers.
function(troupe_add_fuzz_replay codec)
  set(area codecs)
  if(ARGC GREATER 1)
    set(area ${ARGV1})
  endif()
  set(dir ${PROJECT_SOURCE_DIR}/test/fuzz)
  add_executable(fuzz_replay_${codec} ${dir}/${codec}_fuzz.c ${dir}/replay_main.c
    ${dir}/fuzz_common.c)
  target_include_directories(fuzz_replay_${codec} PRIVATE ${dir} ${PROJECT_SOURCE_DIR}/net/proto)
  target_link_libraries(fuzz_replay_${codec} PRIVATE troupe_support troupe_static)
  add_test(NAME ${area}_${codec}_corpus COMMAND fuzz_replay_${codec} ${dir}/corpus/${codec})
  set_tests_properties(${area}_${codec}_corpus PROPERTIES LABELS "unit;fuzz" TIMEOUT 300)
endfunction()

troupe_add_fuzz_replay(raw)
troupe_add_fuzz_replay(line)
troupe_add_fuzz_replay(length)
troupe_add_fuzz_replay(http proto)
troupe_add_fuzz_replay(ws proto)
