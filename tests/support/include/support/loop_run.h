/* Running a test's uv loop until something happened, with a deadline, so a
 * hang fails the test instead of stalling ctest. */
#ifndef SHOAL_SUPPORT_LOOP_RUN_H
#define SHOAL_SUPPORT_LOOP_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

/* Runs loop one iteration at a time until done(arg) is true or timeout_ms
 * passed. Returns true when done(arg) held. A private timer wakes the loop
 * at the deadline; it is closed before returning and its memory is freed by
 * the next loop run (the test's teardown runs the loop anyway). */
bool loop_run_until(uv_loop_t *loop, bool (*done)(void *arg), void *arg, uint64_t timeout_ms);

/* For the common case: runs until *count >= want. */
bool loop_run_until_count(uv_loop_t *loop, const int *count, int want, uint64_t timeout_ms);

#endif /* SHOAL_SUPPORT_LOOP_RUN_H */
