# Install rules: headers, both libraries, troupe.pc, and a CMake package so
# find_package(troupe) works and gives troupe::troupe.
include(CMakePackageConfigHelpers)

install(DIRECTORY include/troupe DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS troupe_static troupe_shared EXPORT troupeTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT troupeTargets NAMESPACE troupe:: FILE troupeTargets.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/troupe)

file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/troupeConfig.cmake.in [=[
@PACKAGE_INIT@
include(CMakeFindDependencyMacro)
find_dependency(Threads)
include("${CMAKE_CURRENT_LIST_DIR}/troupeTargets.cmake")
if(NOT TARGET troupe::troupe)
  add_library(troupe::troupe ALIAS troupe::troupe_shared)
endif()
]=])
configure_package_config_file(${CMAKE_CURRENT_BINARY_DIR}/troupeConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/troupeConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/troupe)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/troupeConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/troupeConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/troupeConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/troupe)

set(TROUPE_PC_LIBS "-lev -lcares -lhttp_parser -lwslay -lpthread")
if(TROUPE_HAVE_BORINGSSL)
  set(TROUPE_PC_LIBS "${TROUPE_PC_LIBS} -L${TROUPE_BORINGSSL_LIBDIR} -Wl,-rpath,${TROUPE_BORINGSSL_LIBDIR} -lssl -lcrypto")
endif()
# Relocatable: the prefix is found from where the .pc file is, so an
# install with `cmake --install --prefix DIR` works wherever DIR is.
file(RELATIVE_PATH TROUPE_PC_UP "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig" "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/$" "" TROUPE_PC_UP "${TROUPE_PC_UP}")
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/troupe.pc
"prefix=\${pcfiledir}/${TROUPE_PC_UP}
libdir=\${prefix}/${CMAKE_INSTALL_LIBDIR}
includedir=\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}

Name: troupe
Description: actor-style message-passing server runtime
Version: ${PROJECT_VERSION}
Libs: -L\${libdir} -ltroupe
Libs.private: ${TROUPE_PC_LIBS}
Cflags: -I\${includedir}
")
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/troupe.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
