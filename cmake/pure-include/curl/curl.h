/* Poison header for the pure targets: see cmake/pure-include/uv.h and
 * cmake/Pure.cmake. */
#error "shoal_pure: pure code must not use libcurl (<curl/curl.h>); only common/http_client.c may"
