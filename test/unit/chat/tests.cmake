# The chat demo's pure parts (demo/chat/irc.c).
if(TROUPE_BUILD_DEMOS)
  add_executable(test_chat_irc unit/chat/irc_test.c ${PROJECT_SOURCE_DIR}/demo/chat/irc.c)
  target_include_directories(test_chat_irc PRIVATE ${CRITERION_INCLUDE_DIR} ${PROJECT_SOURCE_DIR}/demo/chat)
  target_link_libraries(test_chat_irc PRIVATE ${CRITERION_LIBRARY})
  add_test(NAME chat_irc COMMAND test_chat_irc -j1)
  set_tests_properties(chat_irc PROPERTIES LABELS "unit" TIMEOUT 60)
endif()
