/* Poison header for the pure targets: see cmake/pure-include/uv.h and
 * cmake/Pure.cmake. */
#error "shoal_pure: pure code must not use http-parser (<http_parser.h>); it belongs to shoal_io"
