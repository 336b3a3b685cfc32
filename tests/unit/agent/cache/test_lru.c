/* Unit tests for the LRU accounting (agent/cache/lru.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache/lru.h"
#include "shoal/error.h"

/* Records every victim, in order. */
struct victims {
    char keys[64][32];
    uint64_t sizes[64];
    size_t n;
};

static void record(const char *key, uint64_t size, void *arg)
{
    struct victims *v = arg;
    assert_true(v->n < 64);
    snprintf(v->keys[v->n], sizeof(v->keys[v->n]), "%s", key);
    v->sizes[v->n] = size;
    v->n++;
}

static void test_add_touch_remove_contains(void **state)
{
    (void)state;
    struct lru *l = lru_create();
    assert_non_null(l);
    assert_int_equal(lru_count(l), 0);
    assert_int_equal(lru_total_bytes(l), 0);
    assert_false(lru_contains(l, "a"));

    assert_int_equal(lru_add(l, "a", 10, 1), 0);
    assert_int_equal(lru_add(l, "b", 20, 2), 0);
    assert_true(lru_contains(l, "a"));
    assert_true(lru_contains(l, "b"));
    assert_false(lru_contains(l, "c"));
    assert_int_equal(lru_count(l), 2);
    assert_int_equal(lru_total_bytes(l), 30);

    lru_touch(l, "zzz", 5); /* absent: no-op */
    assert_int_equal(lru_count(l), 2);

    assert_int_equal(lru_remove(l, "a"), 0);
    assert_false(lru_contains(l, "a"));
    assert_int_equal(lru_remove(l, "a"), SHOAL_ENOT_FOUND);
    assert_int_equal(lru_count(l), 1);
    assert_int_equal(lru_total_bytes(l), 20);
    assert_int_equal(lru_remove(l, "b"), 0);
    assert_int_equal(lru_count(l), 0);
    assert_int_equal(lru_total_bytes(l), 0);

    /* Re-adding after removal works. */
    assert_int_equal(lru_add(l, "a", 7, 3), 0);
    assert_int_equal(lru_total_bytes(l), 7);
    lru_destroy(l);
    lru_destroy(NULL);
}

static void test_update_existing_size(void **state)
{
    (void)state;
    struct lru *l = lru_create();
    assert_int_equal(lru_add(l, "a", 100, 1), 0);
    assert_int_equal(lru_add(l, "b", 50, 2), 0);
    assert_int_equal(lru_add(l, "a", 30, 3), 0);
    assert_int_equal(lru_count(l), 2);
    assert_int_equal(lru_total_bytes(l), 80);
    assert_int_equal(lru_add(l, "a", 300, 4), 0);
    assert_int_equal(lru_total_bytes(l), 350);

    /* The update also moved "a" to the MRU end: "b" goes first. */
    struct victims v = {0};
    assert_int_equal(lru_evict(l, 0, 300, record, &v), 1);
    assert_string_equal(v.keys[0], "b");
    assert_int_equal(v.sizes[0], 50);
    lru_destroy(l);
}

static void test_eviction_order(void **state)
{
    (void)state;
    struct lru *l = lru_create();
    assert_int_equal(lru_add(l, "a", 1, 10), 0);
    assert_int_equal(lru_add(l, "b", 2, 20), 0);
    assert_int_equal(lru_add(l, "c", 3, 30), 0);
    assert_int_equal(lru_add(l, "d", 4, 40), 0);
    lru_touch(l, "a", 50); /* a becomes most recent */
    lru_touch(l, "c", 60);

    struct victims v = {0};
    assert_int_equal(lru_evict(l, 0, 0, record, &v), 4);
    assert_int_equal(v.n, 4);
    assert_string_equal(v.keys[0], "b");
    assert_int_equal(v.sizes[0], 2);
    assert_string_equal(v.keys[1], "d");
    assert_int_equal(v.sizes[1], 4);
    assert_string_equal(v.keys[2], "a");
    assert_int_equal(v.sizes[2], 1);
    assert_string_equal(v.keys[3], "c");
    assert_int_equal(v.sizes[3], 3);
    assert_int_equal(lru_count(l), 0);
    assert_int_equal(lru_total_bytes(l), 0);
    lru_destroy(l);
}

static void test_out_of_order_times_and_ties(void **state)
{
    (void)state;
    struct lru *l = lru_create();
    /* As at startup: entries arrive with file times in no particular order. */
    assert_int_equal(lru_add(l, "m", 1, 300), 0);
    assert_int_equal(lru_add(l, "x", 1, 100), 0);
    assert_int_equal(lru_add(l, "c", 1, 200), 0);
    assert_int_equal(lru_add(l, "b", 1, 100), 0); /* tie with x: b first */
    assert_int_equal(lru_add(l, "z", 1, 50), 0);
    assert_int_equal(lru_add(l, "a", 1, 300), 0); /* tie with m: a first */
    lru_touch(l, "z", 400);                       /* newer use: to the end */

    struct victims v = {0};
    assert_int_equal(lru_evict(l, 0, 0, record, &v), 6);
    const char *want[] = {"b", "x", "c", "a", "m", "z"};
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(v.keys[i], want[i]);
    lru_destroy(l);
}

static void test_watermarks(void **state)
{
    (void)state;
    struct lru *l = lru_create();
    for (int i = 0; i < 10; i++) {
        char k[8];
        snprintf(k, sizeof(k), "k%d", i);
        assert_int_equal(lru_add(l, k, 10, (uint64_t)i), 0);
    }
    assert_int_equal(lru_total_bytes(l), 100);

    /* At or below high nothing goes, even though above low. */
    struct victims v = {0};
    assert_int_equal(lru_evict(l, 100, 50, record, &v), 0);
    assert_int_equal(v.n, 0);
    assert_int_equal(lru_evict(l, 200, 0, record, &v), 0);
    assert_int_equal(lru_total_bytes(l), 100);

    /* Above high: down to low exactly. */
    assert_int_equal(lru_evict(l, 99, 55, record, &v), 5);
    assert_int_equal(lru_total_bytes(l), 50);
    assert_string_equal(v.keys[0], "k0");
    assert_string_equal(v.keys[4], "k4");
    assert_true(lru_contains(l, "k5"));
    assert_false(lru_contains(l, "k4"));

    /* A NULL victim callback is allowed. */
    assert_int_equal(lru_evict(l, 10, 10, NULL, NULL), 4);
    assert_int_equal(lru_total_bytes(l), 10);
    assert_true(lru_contains(l, "k9"));
    lru_destroy(l);
}

static void test_pinned_never_evicted(void **state)
{
    (void)state;
    struct lru *l = lru_create();
    assert_int_equal(lru_add(l, "a", 10, 1), 0);
    assert_int_equal(lru_add(l, "b", 10, 2), 0);
    assert_int_equal(lru_add(l, "c", 10, 3), 0);
    assert_int_equal(lru_add(l, "d", 10, 4), 0);

    lru_pin(l, "a");
    lru_pin(l, "a"); /* nested */
    lru_pin(l, "c");
    lru_pin(l, "nope"); /* absent: no-op */
    assert_true(lru_pinned(l, "a"));
    assert_false(lru_pinned(l, "b"));
    assert_false(lru_pinned(l, "nope"));

    struct victims v = {0};
    assert_int_equal(lru_evict(l, 0, 0, record, &v), 2);
    assert_string_equal(v.keys[0], "b");
    assert_string_equal(v.keys[1], "d");
    assert_int_equal(lru_count(l), 2);
    assert_int_equal(lru_total_bytes(l), 20);

    /* Only pinned entries remain: eviction stops without removing them. */
    assert_int_equal(lru_evict(l, 0, 0, record, &v), 0);
    assert_int_equal(lru_count(l), 2);

    /* One unpin of two leaves "a" pinned. */
    lru_unpin(l, "a");
    assert_true(lru_pinned(l, "a"));
    assert_int_equal(lru_evict(l, 0, 0, record, &v), 0);
    lru_unpin(l, "a");
    assert_false(lru_pinned(l, "a"));
    lru_unpin(l, "a"); /* already unpinned: no-op, must not wrap */
    lru_unpin(l, "nope");
    assert_false(lru_pinned(l, "a"));
    assert_int_equal(lru_evict(l, 0, 0, record, &v), 1);
    assert_string_equal(v.keys[2], "a");
    assert_true(lru_contains(l, "c"));
    lru_destroy(l);
}

static void test_remove_pinned(void **state)
{
    (void)state;
    struct lru *l = lru_create();
    assert_int_equal(lru_add(l, "a", 10, 1), 0);
    lru_pin(l, "a");
    assert_int_equal(lru_remove(l, "a"), 0);
    assert_false(lru_contains(l, "a"));
    assert_false(lru_pinned(l, "a"));
    assert_int_equal(lru_total_bytes(l), 0);
    /* Re-added, the entry starts unpinned: the pins went with it. */
    assert_int_equal(lru_add(l, "a", 10, 2), 0);
    assert_false(lru_pinned(l, "a"));
    assert_int_equal(lru_evict(l, 0, 0, NULL, NULL), 1);
    lru_destroy(l);
}

static void test_pinned_in_the_middle(void **state)
{
    (void)state;
    struct lru *l = lru_create();
    assert_int_equal(lru_add(l, "a", 100, 1), 0);
    assert_int_equal(lru_add(l, "b", 100, 2), 0);
    assert_int_equal(lru_add(l, "c", 100, 3), 0);
    lru_pin(l, "a");
    /* Skips pinned "a" and stops as soon as the total reaches low. */
    struct victims v = {0};
    assert_int_equal(lru_evict(l, 250, 200, record, &v), 1);
    assert_string_equal(v.keys[0], "b");
    assert_int_equal(v.sizes[0], 100);
    assert_true(lru_contains(l, "a"));
    assert_true(lru_contains(l, "c"));
    lru_destroy(l);
}

static void test_many_entries(void **state)
{
    (void)state;
    enum { N = 10000 };
    struct lru *l = lru_create();
    char k[32];
    uint64_t sum = 0;
    /* Insert in a scrambled time order to exercise sorted insertion over
     * many buckets and table growth. */
    for (uint64_t i = 0; i < N; i++) {
        uint64_t t = (i * 7919) % N;
        snprintf(k, sizeof(k), "key-%05llu", (unsigned long long)t);
        assert_int_equal(lru_add(l, k, t + 1, t), 0);
        sum += t + 1;
    }
    assert_int_equal(lru_count(l), N);
    assert_int_equal(lru_total_bytes(l), sum);
    for (uint64_t i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "key-%05llu", (unsigned long long)i);
        assert_true(lru_contains(l, k));
    }
    assert_false(lru_contains(l, "key-10000"));

    /* Remove every odd key. */
    for (uint64_t i = 1; i < N; i += 2) {
        snprintf(k, sizeof(k), "key-%05llu", (unsigned long long)i);
        assert_int_equal(lru_remove(l, k), 0);
        sum -= i + 1;
    }
    assert_int_equal(lru_count(l), N / 2);
    assert_int_equal(lru_total_bytes(l), sum);

    /* Just enough to drop the oldest entry: strict time order. */
    struct victims v = {0};
    assert_int_equal(lru_evict(l, 0, sum - 1, record, &v), 1);
    assert_string_equal(v.keys[0], "key-00000");
    assert_int_equal(v.sizes[0], 1);
    lru_destroy(l);
}

static void test_evict_all_large_sizes(void **state)
{
    (void)state;
    struct lru *l = lru_create();
    uint64_t big = 1ULL << 40;
    assert_int_equal(lru_add(l, "sha256:aa", big, 1), 0);
    assert_int_equal(lru_add(l, "sha256:bb", big, 2), 0);
    assert_int_equal(lru_total_bytes(l), 2 * big);
    struct victims v = {0};
    assert_int_equal(lru_evict(l, big, big, record, &v), 1);
    assert_string_equal(v.keys[0], "sha256:aa");
    assert_int_equal(v.sizes[0], big);
    lru_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_touch_remove_contains),
        cmocka_unit_test(test_update_existing_size),
        cmocka_unit_test(test_eviction_order),
        cmocka_unit_test(test_out_of_order_times_and_ties),
        cmocka_unit_test(test_watermarks),
        cmocka_unit_test(test_pinned_never_evicted),
        cmocka_unit_test(test_remove_pinned),
        cmocka_unit_test(test_pinned_in_the_middle),
        cmocka_unit_test(test_many_entries),
        cmocka_unit_test(test_evict_all_large_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
