/* Unit tests of the ban table (agent/swarm/ban_list.c): bans by address and
 * by id and when they end, a ban without an id, slot reuse, eviction when
 * full, and long addresses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "swarm/ban_list.h"

static void id_of(uint8_t id[WIRE_ID_LEN], unsigned n)
{
    memset(id, 0xab, WIRE_ID_LEN);
    id[0] = (uint8_t)n;
    id[1] = (uint8_t)(n >> 8);
}

static void test_empty(void **state)
{
    (void)state;
    struct ban_list b = {0};
    uint8_t id[WIRE_ID_LEN];
    id_of(id, 1);
    assert_false(ban_list_has_addr(&b, "10.0.0.1:7000", 0));
    assert_false(ban_list_has_addr(&b, "", 0));
    assert_false(ban_list_has_id(&b, id, 0));
}

/* A ban holds from now until now + for, by address and by id, and not a
 * millisecond longer. */
static void test_ban_and_expiry(void **state)
{
    (void)state;
    struct ban_list b = {0};
    uint8_t id[WIRE_ID_LEN], other[WIRE_ID_LEN];
    id_of(id, 1);
    id_of(other, 2);
    ban_list_add(&b, "10.0.0.1:7000", id, 1000, 500);
    assert_int_equal(b.n, 1);
    assert_true(ban_list_has_addr(&b, "10.0.0.1:7000", 1000));
    assert_true(ban_list_has_addr(&b, "10.0.0.1:7000", 1499));
    assert_false(ban_list_has_addr(&b, "10.0.0.1:7000", 1500));
    assert_true(ban_list_has_id(&b, id, 1499));
    assert_false(ban_list_has_id(&b, id, 1500));
    /* Other addresses and ids, and prefixes, are not banned. */
    assert_false(ban_list_has_addr(&b, "10.0.0.1:7001", 1000));
    assert_false(ban_list_has_addr(&b, "10.0.0.1", 1000));
    assert_false(ban_list_has_addr(&b, "10.0.0.1:70000", 1000));
    assert_false(ban_list_has_id(&b, other, 1000));
}

/* Without an id only the address is banned; without an address (NULL) only
 * the id, and an empty address never matches. */
static void test_partial_bans(void **state)
{
    (void)state;
    struct ban_list b = {0};
    uint8_t id[WIRE_ID_LEN], zero[WIRE_ID_LEN] = {0};
    id_of(id, 7);
    ban_list_add(&b, "10.0.0.2:7000", NULL, 0, 1000);
    assert_true(ban_list_has_addr(&b, "10.0.0.2:7000", 10));
    assert_false(ban_list_has_id(&b, zero, 10));
    ban_list_add(&b, NULL, id, 0, 1000);
    assert_true(ban_list_has_id(&b, id, 10));
    assert_false(ban_list_has_addr(&b, "", 10));
    assert_int_equal(b.n, 2);
}

/* A new ban takes the first expired slot before growing the table. */
static void test_expired_slot_reused(void **state)
{
    (void)state;
    struct ban_list b = {0};
    ban_list_add(&b, "a:1", NULL, 0, 100);
    ban_list_add(&b, "b:1", NULL, 0, 1000);
    ban_list_add(&b, "c:1", NULL, 0, 50);
    assert_int_equal(b.n, 3);
    ban_list_add(&b, "d:1", NULL, 200, 1000); /* a and c are over: a's slot */
    assert_int_equal(b.n, 3);
    assert_string_equal(b.e[0].addr, "d:1");
    assert_true(ban_list_has_addr(&b, "d:1", 200));
    assert_true(ban_list_has_addr(&b, "b:1", 200));
    ban_list_add(&b, "e:1", NULL, 200, 1000); /* then c's */
    assert_int_equal(b.n, 3);
    assert_string_equal(b.e[2].addr, "e:1");
    ban_list_add(&b, "f:1", NULL, 200, 1000); /* none over: grows */
    assert_int_equal(b.n, 4);
    /* A ban again of a banned address extends it through a new slot. */
    ban_list_add(&b, "b:1", NULL, 900, 1000);
    assert_true(ban_list_has_addr(&b, "b:1", 1500));
}

/* When full, a new ban evicts the one that ends first, even if it is still
 * running; the others stay. */
static void test_full_evicts_earliest(void **state)
{
    (void)state;
    struct ban_list b = {0};
    uint8_t id[WIRE_ID_LEN];
    char addr[32];
    for (unsigned i = 0; i < BAN_LIST_MAX; i++) {
        snprintf(addr, sizeof(addr), "10.1.0.%u:7000", i);
        id_of(id, i);
        /* Slot 17 ends first. */
        ban_list_add(&b, addr, id, 0, i == 17 ? 5000 : 10000 + i);
    }
    assert_int_equal(b.n, BAN_LIST_MAX);
    id_of(id, 1000);
    ban_list_add(&b, "10.2.0.1:7000", id, 100, 60000);
    assert_int_equal(b.n, BAN_LIST_MAX);
    assert_true(ban_list_has_addr(&b, "10.2.0.1:7000", 100));
    assert_true(ban_list_has_id(&b, id, 100));
    assert_false(ban_list_has_addr(&b, "10.1.0.17:7000", 100));
    id_of(id, 17);
    assert_false(ban_list_has_id(&b, id, 100));
    for (unsigned i = 0; i < BAN_LIST_MAX; i++) {
        if (i == 17)
            continue;
        snprintf(addr, sizeof(addr), "10.1.0.%u:7000", i);
        assert_true(ban_list_has_addr(&b, addr, 100));
    }
    /* The next one evicts slot 0 (ends at 10000), the earliest now. */
    ban_list_add(&b, "10.2.0.2:7000", NULL, 100, 60000);
    assert_false(ban_list_has_addr(&b, "10.1.0.0:7000", 100));
    assert_true(ban_list_has_addr(&b, "10.1.0.1:7000", 100));
    /* When full of expired bans, the earliest is taken too. */
    ban_list_add(&b, "10.2.0.3:7000", NULL, 100000, 1);
    assert_true(ban_list_has_addr(&b, "10.2.0.3:7000", 100000));
    assert_int_equal(b.n, BAN_LIST_MAX);
}

/* An address too long for a slot is kept cut to fit, and the cut ban
 * matches only the cut form, never the longer address (the swarm core
 * neither dials nor keeps addresses that long). */
static void test_long_address(void **state)
{
    (void)state;
    struct ban_list b = {0};
    char addr[BAN_LIST_ADDR_MAX + 20];
    memset(addr, 'x', sizeof(addr) - 1);
    addr[sizeof(addr) - 1] = '\0';
    ban_list_add(&b, addr, NULL, 0, 1000);
    assert_int_equal(strlen(b.e[0].addr), BAN_LIST_ADDR_MAX - 1);
    assert_false(ban_list_has_addr(&b, addr, 10));
    addr[BAN_LIST_ADDR_MAX - 1] = '\0';
    assert_true(ban_list_has_addr(&b, addr, 10));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_ban_and_expiry),
        cmocka_unit_test(test_partial_bans),
        cmocka_unit_test(test_expired_slot_reused),
        cmocka_unit_test(test_full_evicts_earliest),
        cmocka_unit_test(test_long_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
