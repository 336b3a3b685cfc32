/* Running a test's uv loop with a deadline (support/loop_run.h). */
#include "support/loop_run.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

struct deadline {
    uv_timer_t timer;
    uint64_t at;
    bool fired;
};

/* Wakes the loop every few milliseconds: a callback that ran in the timer
 * phase of an iteration (a deferred, zero-delay timer) is followed by a poll
 * that would otherwise sleep until the next timer, the deadline itself. */
#define WAKE_MS 5

static void on_deadline(uv_timer_t *t)
{
    struct deadline *d = t->data;
    if (uv_now(t->loop) >= d->at)
        d->fired = true;
}

static void on_deadline_closed(uv_handle_t *h)
{
    free(h->data);
}

bool loop_run_until(uv_loop_t *loop, bool (*done)(void *arg), void *arg, uint64_t timeout_ms)
{
    struct deadline *d = calloc(1, sizeof(*d));
    bool ok;

    assert_non_null(d);
    assert_int_equal(uv_timer_init(loop, &d->timer), 0);
    d->timer.data = d;
    d->at = uv_now(loop) + timeout_ms;
    assert_int_equal(uv_timer_start(&d->timer, on_deadline, WAKE_MS, WAKE_MS), 0);
    while (!(ok = done(arg)) && !d->fired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&d->timer, on_deadline_closed);
    return ok;
}

struct count_want {
    const int *count;
    int want;
};

static bool count_reached(void *arg)
{
    const struct count_want *c = arg;

    return *c->count >= c->want;
}

bool loop_run_until_count(uv_loop_t *loop, const int *count, int want, uint64_t timeout_ms)
{
    struct count_want c = {count, want};

    return loop_run_until(loop, count_reached, &c, timeout_ms);
}
