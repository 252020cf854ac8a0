# libFuzzer target for the IMAP plugin's command side (issue 6): CommandReader
# framing and parse_command. Included from tests/fuzz/CMakeLists.txt
# (POSTERN_FUZZ=ON, clang); tests/fuzz/run_imap_fuzz.sh builds and runs it.
# The plugin's sources are compiled into the target itself, so only they get
# coverage feedback (the plugin links the SDK only, never postern_core).
set(POSTERN_IMAP_SRC ${CMAKE_CURRENT_LIST_DIR}/../../plugins/imap/src)
add_executable(postern_imap_command_fuzz ${CMAKE_CURRENT_LIST_DIR}/imap_command_fuzz.cpp
  ${POSTERN_IMAP_SRC}/parser.cpp ${POSTERN_IMAP_SRC}/response.cpp ${POSTERN_IMAP_SRC}/mutf7.cpp)
target_include_directories(postern_imap_command_fuzz PRIVATE ${POSTERN_IMAP_SRC})
target_compile_options(postern_imap_command_fuzz PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize=function)
target_link_options(postern_imap_command_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
target_link_libraries(postern_imap_command_fuzz PRIVATE Postern::sdk Postern::mail postern_warnings)
