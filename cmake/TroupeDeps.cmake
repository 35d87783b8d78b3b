# Finds troupe's dependencies (Debian packages; nothing vendored) and
# gathers them in the interface target troupe_deps.
find_package(Threads REQUIRED)

# libev has no pkg-config file.
find_path(LIBEV_INCLUDE_DIR ev.h REQUIRED)
find_library(LIBEV_LIBRARY NAMES ev REQUIRED)

# c-ares (libc-ares-dev, 1.18) resolves host names on the workers' loops.
find_package(PkgConfig REQUIRED)
pkg_check_modules(CARES REQUIRED IMPORTED_TARGET libcares)

# The protocol layers in net/proto/: HTTP/1.1 parsing with http_parser
# (libhttp-parser-dev, 2.9) and WebSocket framing with wslay (libwslay-dev,
# 1.1). Neither ships a pkg-config file.
find_path(HTTP_PARSER_INCLUDE_DIR http_parser.h REQUIRED)
find_library(HTTP_PARSER_LIBRARY NAMES http_parser REQUIRED)
find_path(WSLAY_INCLUDE_DIR wslay/wslay.h REQUIRED)
find_library(WSLAY_LIBRARY NAMES wslay REQUIRED)

# BoringSSL from Debian's android-libboringssl-dev: headers and libraries
# live under android/ subdirectories and need an rpath.
find_path(BORINGSSL_INCLUDE_DIR openssl/ssl.h
  PATHS /usr/include/android NO_DEFAULT_PATH)
find_library(BORINGSSL_SSL_LIBRARY NAMES ssl
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/android NO_DEFAULT_PATH)
find_library(BORINGSSL_CRYPTO_LIBRARY NAMES crypto
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/android NO_DEFAULT_PATH)
if(BORINGSSL_SSL_LIBRARY)
  get_filename_component(TROUPE_BORINGSSL_LIBDIR "${BORINGSSL_SSL_LIBRARY}" DIRECTORY)
  set(TROUPE_HAVE_BORINGSSL ON)
else()
  set(TROUPE_HAVE_BORINGSSL OFF)
  message(STATUS "BoringSSL not found (android-libboringssl-dev): TLS disabled")
endif()

add_library(troupe_deps INTERFACE)
target_include_directories(troupe_deps INTERFACE ${LIBEV_INCLUDE_DIR} ${CARES_INCLUDE_DIRS}
  ${HTTP_PARSER_INCLUDE_DIR} ${WSLAY_INCLUDE_DIR})
target_link_libraries(troupe_deps INTERFACE ${LIBEV_LIBRARY} ${CARES_LINK_LIBRARIES}
  ${HTTP_PARSER_LIBRARY} ${WSLAY_LIBRARY} Threads::Threads)
set(TROUPE_DEP_LIBS ev cares http_parser wslay pthread)
if(TROUPE_HAVE_BORINGSSL)
  # BoringSSL headers are added privately by the TLS sources, so they never
  # shadow a system OpenSSL in users' builds.
  target_link_libraries(troupe_deps INTERFACE ${BORINGSSL_SSL_LIBRARY} ${BORINGSSL_CRYPTO_LIBRARY})
  list(APPEND TROUPE_DEP_LIBS ${BORINGSSL_SSL_LIBRARY} ${BORINGSSL_CRYPTO_LIBRARY})
endif()

if(TROUPE_BUILD_TESTS)
  find_path(CRITERION_INCLUDE_DIR criterion/criterion.h REQUIRED)
  find_library(CRITERION_LIBRARY NAMES criterion REQUIRED)
endif()
