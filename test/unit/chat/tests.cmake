# The chat demo's pure parts (demo/chat/irc.c).
if(TROUPE_BUILD_DEMOS)
  add_executable(test_chat_irc unit/chat/irc_test.c ${PROJECT_SOURCE_DIR}/demo/chat/irc.c)
  target_include_directories(test_chat_irc PRIVATE ${CRITERION_INCLUDE_DIR} ${PROJECT_SOURCE_DIR}/demo/chat)
  target_link_libraries(test_chat_irc PRIVATE ${CRITERION_LIBRARY})
  add_test(NAME chat_irc COMMAND test_chat_irc -j1)
  set_tests_properties(chat_irc PROPERTIES LABELS "unit" TIMEOUT 60)
  # The IRC fuzzer's corpus, replayed without libFuzzer (test/fuzz/replay_main.c).
  set(fz ${PROJECT_SOURCE_DIR}/test/fuzz)
  add_executable(fuzz_replay_irc ${fz}/irc_fuzz.c ${fz}/replay_main.c ${PROJECT_SOURCE_DIR}/demo/chat/irc.c)
  target_include_directories(fuzz_replay_irc PRIVATE ${PROJECT_SOURCE_DIR}/demo/chat)
  add_test(NAME chat_irc_corpus COMMAND fuzz_replay_irc ${fz}/corpus/irc)
  set_tests_properties(chat_irc_corpus PROPERTIES LABELS "unit;fuzz" TIMEOUT 300)
endif()
