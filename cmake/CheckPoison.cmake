# Run by the pure_poison_<target> CTests (cmake/Pure.cmake):
#   cmake -DCC=cc -DTARGET=t -DPOISON=dir -DINCS="a|b" -DWORK=dir -P CheckPoison.cmake
# INCS is the pure target's include path, in order. Fails unless the poison
# directory comes first and every forbidden header stops the compiler with
# the shoal_pure error, while a plain C file compiles with the same flags and
# <uv.h> itself compiles once the poison directory is left out.
foreach(v CC TARGET POISON INCS WORK)
  if(NOT DEFINED ${v} OR "${${v}}" STREQUAL "")
    message(FATAL_ERROR "CheckPoison.cmake: -D${v}= is required")
  endif()
endforeach()

string(REPLACE "|" ";" incs "${INCS}")
list(GET incs 0 first)
if(NOT first STREQUAL POISON)
  message(FATAL_ERROR "${TARGET}: the first include directory is ${first}, not the poison "
                      "directory ${POISON} (include path: ${incs})")
endif()
set(flags "")
set(flags_no_poison "")
foreach(d IN LISTS incs)
  list(APPEND flags "-I${d}")
  if(NOT d STREQUAL POISON)
    list(APPEND flags_no_poison "-I${d}")
  endif()
endforeach()

file(MAKE_DIRECTORY "${WORK}")

function(compile name text flags_var out_rc out_err)
  file(WRITE "${WORK}/${name}.c" "${text}")
  execute_process(COMMAND ${CC} -fsyntax-only ${${flags_var}} "${WORK}/${name}.c"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE o ERROR_VARIABLE e)
  set(${out_rc} "${rc}" PARENT_SCOPE)
  set(${out_err} "${o}${e}" PARENT_SCOPE)
endfunction()

compile(control "#include <stdio.h>\nint main(void) { return 0; }\n" flags rc err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${TARGET}: a plain C file does not compile with the target's include "
                      "path, so the probes prove nothing:\n${err}")
endif()
compile(control_uv "#include <uv.h>\nint main(void) { return 0; }\n" flags_no_poison rc err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${TARGET}: <uv.h> does not compile even without the poison "
                      "directory (is libuv1-dev installed?):\n${err}")
endif()

set(n 0)
foreach(h uv.h curl/curl.h http_parser.h hiredis/hiredis.h)
  math(EXPR n "${n} + 1")
  compile(probe${n} "#include <${h}>\nint main(void) { return 0; }\n" flags rc err)
  if(rc EQUAL 0)
    message(FATAL_ERROR "${TARGET}: <${h}> compiled against a pure target's include path")
  endif()
  if(NOT err MATCHES "shoal_pure: pure code must not use")
    message(FATAL_ERROR "${TARGET}: <${h}> failed, but not with the shoal_pure poison:\n${err}")
  endif()
  message(STATUS "${TARGET}: <${h}> refused: shoal_pure poison")
endforeach()
