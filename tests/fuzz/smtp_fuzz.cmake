# libFuzzer targets for the SMTP engine (issue 3): the command-argument parser, the
# DATA/BDAT state machine, and whole sessions through the socket-free SmtpEngine. Included from tests/fuzz/CMakeLists.txt (POSTERN_FUZZ=ON,
# clang); tests/fuzz/run_smtp_fuzz.sh builds and runs them.

# Coverage feedback for the code under test only (see the note on the MIME sources).
set(POSTERN_SMTP_FUZZ_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/../../core/smtp/address.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../../core/smtp/data_decoder.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../../core/smtp/auth_command.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../../core/smtp/body.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../../core/smtp/command.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../../core/smtp/engine.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../../core/smtp/envelope.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../../core/smtp/relay_policy.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../../core/smtp/reply.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../../core/smtp/throttle.cpp)
set_source_files_properties(${POSTERN_SMTP_FUZZ_SOURCES} TARGET_DIRECTORY postern_core
  PROPERTIES COMPILE_OPTIONS "-fsanitize=fuzzer-no-link" SKIP_PRECOMPILE_HEADERS ON)

add_executable(postern_smtp_command_fuzz ${CMAKE_CURRENT_LIST_DIR}/smtp_command_fuzz.cpp)
target_compile_options(postern_smtp_command_fuzz PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize=function)
target_link_options(postern_smtp_command_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
target_link_libraries(postern_smtp_command_fuzz PRIVATE postern_core postern_warnings)

add_executable(postern_smtp_data_fuzz ${CMAKE_CURRENT_LIST_DIR}/smtp_data_fuzz.cpp)
target_compile_options(postern_smtp_data_fuzz PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize=function)
target_link_options(postern_smtp_data_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
target_link_libraries(postern_smtp_data_fuzz PRIVATE postern_core postern_warnings)

add_executable(postern_smtp_session_fuzz ${CMAKE_CURRENT_LIST_DIR}/smtp_session_fuzz.cpp)
target_compile_options(postern_smtp_session_fuzz PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize=function)
target_link_options(postern_smtp_session_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
target_link_libraries(postern_smtp_session_fuzz PRIVATE postern_core postern_warnings)
