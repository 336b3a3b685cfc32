# Pure targets: the decision-making cores (codecs, parsers, the piece picker,
# the tracker's swarm, the LRU ...) take events and now_ms and return what to
# do; they never do I/O themselves. Two guards keep it that way:
#
#  - compile time: a pure target searches cmake/pure-include first, whose
#    uv.h, curl/curl.h, http_parser.h and hiredis/hiredis.h hold only an
#    #error, so including one of them (directly or through a header such as
#    shoal/http_client.h) fails the build with "shoal_pure: ...";
#  - configure time: a pure target may not link libuv, libcurl, http-parser,
#    hiredis or an I/O target (shoal_io, shoal_common), directly or through
#    what it links; the check runs once every directory has been read.
#
# tests/unit/CMakeLists.txt registers a CTest per pure target
# (shoal_pure_poison_test) that compiles probes against the target's include
# path and expects the poison, so the rule cannot rot silently.

set(SHOAL_PURE_INCLUDE_DIR ${CMAKE_CURRENT_LIST_DIR}/pure-include)
set(SHOAL_PURE_CHECK_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/CheckPoison.cmake)
set_property(GLOBAL PROPERTY SHOAL_PURE_TARGETS "")

# shoal_pure_target(TARGET): makes TARGET pure (see above).
function(shoal_pure_target target)
  target_include_directories(${target} BEFORE PRIVATE ${SHOAL_PURE_INCLUDE_DIR})
  set_property(GLOBAL APPEND PROPERTY SHOAL_PURE_TARGETS ${target})
endfunction()

# Collects into OUT every link item reachable from TARGET.
function(_shoal_link_closure target out)
  set(seen "")
  set(todo ${target})
  set(items "")
  while(todo)
    list(POP_FRONT todo t)
    if(t IN_LIST seen)
      continue()
    endif()
    list(APPEND seen ${t})
    set(libs "")
    get_target_property(type ${t} TYPE)
    if(NOT type STREQUAL "INTERFACE_LIBRARY")
      get_target_property(own ${t} LINK_LIBRARIES)
      if(own)
        list(APPEND libs ${own})
      endif()
    endif()
    get_target_property(iface ${t} INTERFACE_LINK_LIBRARIES)
    if(iface)
      list(APPEND libs ${iface})
    endif()
    foreach(l IN LISTS libs)
      string(REGEX REPLACE "^\\$<LINK_ONLY:(.*)>$" "\\1" l "${l}")
      list(APPEND items "${l}")
      if(TARGET "${l}")
        list(APPEND todo "${l}")
      endif()
    endforeach()
  endwhile()
  set(${out} "${items}" PARENT_SCOPE)
endfunction()

function(_shoal_pure_check_links)
  get_property(targets GLOBAL PROPERTY SHOAL_PURE_TARGETS)
  set(forbidden shoal_io shoal_common PkgConfig::UV PkgConfig::CURL)
  if(HTTP_PARSER_LIB)
    list(APPEND forbidden "${HTTP_PARSER_LIB}")
  endif()
  foreach(t IN LISTS targets)
    _shoal_link_closure(${t} items)
    foreach(l IN LISTS items)
      if(l IN_LIST forbidden OR l MATCHES "(^|/)lib(uv|curl|http_parser|hiredis)[.-]"
         OR l MATCHES "^-l(uv|curl|http_parser|hiredis)$")
        message(FATAL_ERROR "shoal_pure: pure target ${t} links ${l}; pure code must not "
                            "use libuv, libcurl, http-parser or hiredis (cmake/Pure.cmake)")
      endif()
    endforeach()
  endforeach()
endfunction()
cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL _shoal_pure_check_links)

# shoal_pure_poison_test(TARGET): a CTest proving that TARGET's include path
# turns <uv.h>, <curl/curl.h>, <http_parser.h> and <hiredis/hiredis.h> into
# the shoal_pure error (and that it is the poison, not a broken compiler
# line, that stops them).
function(shoal_pure_poison_test target)
  add_test(NAME pure_poison_${target}
           COMMAND ${CMAKE_COMMAND}
                   "-DCC=${CMAKE_C_COMPILER}"
                   "-DTARGET=${target}"
                   "-DPOISON=${SHOAL_PURE_INCLUDE_DIR}"
                   "-DINCS=$<JOIN:$<TARGET_PROPERTY:${target},INCLUDE_DIRECTORIES>,|>"
                   "-DWORK=${CMAKE_CURRENT_BINARY_DIR}/pure_poison_${target}"
                   -P ${SHOAL_PURE_CHECK_SCRIPT})
  set_tests_properties(pure_poison_${target} PROPERTIES TIMEOUT 60)
endfunction()
