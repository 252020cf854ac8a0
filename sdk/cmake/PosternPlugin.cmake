# postern_add_plugin(<name> SOURCES <src>... DESCRIPTOR <file> [OUTPUT_DIR <dir>]
#                    [OUTPUT_NAME <plugin name, default <name>>] [LINK <libs>...])
#
# Builds <name>.so as a MODULE with hidden visibility (only the entry symbol,
# marked POSTERN_ABI_EXPORT, is exported), linked against the SDK only, and
# copies the descriptor beside it as <name>.plugin.xml.
function(postern_add_plugin name)
  cmake_parse_arguments(ARG "" "DESCRIPTOR;OUTPUT_DIR;OUTPUT_NAME" "SOURCES;LINK" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "postern_add_plugin(${name}): SOURCES is required")
  endif()
  if(NOT ARG_DESCRIPTOR)
    message(FATAL_ERROR "postern_add_plugin(${name}): DESCRIPTOR is required")
  endif()
  if(NOT ARG_OUTPUT_DIR)
    set(ARG_OUTPUT_DIR ${CMAKE_BINARY_DIR}/plugins)
  endif()
  if(NOT ARG_OUTPUT_NAME)
    set(ARG_OUTPUT_NAME ${name})
  endif()
  add_library(${name} MODULE ${ARG_SOURCES})
  if(TARGET Postern::sdk)
    target_link_libraries(${name} PRIVATE Postern::sdk ${ARG_LINK})
  else()
    target_link_libraries(${name} PRIVATE postern_sdk ${ARG_LINK})
  endif()
  target_compile_features(${name} PRIVATE cxx_std_20)
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    OUTPUT_NAME ${ARG_OUTPUT_NAME}
    LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIR}
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  # A plugin must not depend on symbols from posternd: fail at link time.
  # Hidden visibility cannot hide libstdc++'s template instantiations (some
  # are STB_GNU_UNIQUE, shared across RTLD_LOCAL plugins and never unloaded):
  # a version script exports the entry symbol and nothing else.
  set(exports ${CMAKE_CURRENT_BINARY_DIR}/${name}.exports.map)
  file(WRITE ${exports} "{\n  global: postern_plugin_entry_v1;\n  local: *;\n};\n")
  target_link_options(${name} PRIVATE -Wl,--no-undefined -Wl,--version-script=${exports})
  set_property(TARGET ${name} APPEND PROPERTY LINK_DEPENDS ${exports})
  get_filename_component(desc ${ARG_DESCRIPTOR} ABSOLUTE)
  add_custom_command(TARGET ${name} POST_BUILD
    COMMAND ${CMAKE_COMMAND} -E copy_if_different ${desc} ${ARG_OUTPUT_DIR}/${ARG_OUTPUT_NAME}.plugin.xml
    VERBATIM)
  set_property(TARGET ${name} PROPERTY POSTERN_DESCRIPTOR ${desc})
endfunction()
