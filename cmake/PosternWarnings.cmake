# Warnings and sanitizers for every Postern target.
add_library(postern_warnings INTERFACE)
target_compile_options(postern_warnings INTERFACE -Wall -Wextra -Werror)
if(POSTERN_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
  if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    # clang 14's -fsanitize=function cannot instrument the coroutine frames
    # ("Cannot represent a difference across sections").
    add_compile_options(-fno-sanitize=function)
  endif()
endif()
