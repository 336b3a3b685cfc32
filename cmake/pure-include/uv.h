/* Poison header: the pure targets (shoal_pure, shoal_agent_pure,
 * shoal_tracker_pure) search this directory first, so a pure core that
 * includes <uv.h> stops here. Pure code takes events and now_ms and returns
 * what to do; the libuv shell around it does the I/O. See cmake/Pure.cmake. */
#error "shoal_pure: pure code must not use libuv (<uv.h>); move the I/O into a shell module"
