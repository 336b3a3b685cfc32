/* Poison header for the pure targets: see cmake/pure-include/uv.h and
 * cmake/Pure.cmake. */
#error "shoal_pure: pure code must not use hiredis (<hiredis/hiredis.h>); it does network I/O"
