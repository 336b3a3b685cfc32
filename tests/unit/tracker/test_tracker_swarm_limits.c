/* Unit tests of what the tracker's swarm core refuses or withholds:
 * announce field bounds and size mismatches (tracker/swarm.c), the caps on
 * swarms and peers, and bad-peer reports (marks, their expiry, the suspect
 * cap, malformed reports). Time is an argument everywhere, so nothing here
 * sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "shoal/error.h"
#include "swarm.h"
#include "test_tracker_swarm_fixture.h"

/* --- Bounds ---------------------------------------------------------------------------------- */

/* Expects SHOAL_EPARSE with an error starting with field. */
static void expect_bad(struct tracker_swarms *s, const struct announce_req *r, const char *field)
{
    assert_int_equal(tracker_announce(s, r, 1000, &R), SHOAL_EPARSE);
    if (strncmp(R.error, field, strlen(field)) != 0 || R.error[strlen(field)] != ':')
        fail_msg("error \"%s\" does not name \"%s\"", R.error, field);
}

static void test_size_mismatch(void **state)
{
    struct tracker_swarms *s = mk(NULL);
    struct announce_req r;
    struct tracker_stats st;

    (void)state;
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", false, 0), 0);
    base_req(&r, DIG_A, 21 * PL, "b");
    expect_bad(s, &r, "size");
    assert_non_null(strstr(R.error, "does not match"));
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.peers, 1);
    assert_int_equal(st.announces, 1);
    tracker_swarms_destroy(s);
}

static void test_field_bounds(void **state)
{
    struct tracker_swarms *s = mk(NULL);
    struct announce_req r;
    struct announce_hash h = {.index = 20};
    const uint64_t failed = 20;
    char longs[400];
    struct tracker_stats st;
    static const char *const bad_digests[] = {
        "", "sha256:abc", "md5:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/"};
    static const char *const bad_agents[] = {"", "a b", "a\"b", "a=b", "ä", "a\nb"};
    static const char *const bad_addrs[] = {"",
                                            "10.0.0.1",
                                            "10.0.0.1:",
                                            "10.0.0.1:0",
                                            "10.0.0.1:65536",
                                            ":5081",
                                            "0.0.0.0:5081",
                                            "[::]:5081",
                                            "::1:5081",
                                            "host name:1",
                                            "10.0.0.1:50x"};
    static const char *const good_addrs[] = {"127.0.0.1:1", "[::1]:5081", "node-17.example:5081",
                                             "10.0.0.1:65535"};

    (void)state;
    base_req(&r, DIG_A, 20 * PL, "a");
    r.digest = NULL;
    expect_bad(s, &r, "digest");
    for (size_t i = 0; i < sizeof(bad_digests) / sizeof(bad_digests[0]); i++) {
        r.digest = bad_digests[i];
        expect_bad(s, &r, "digest");
    }
    base_req(&r, DIG_A, 0, "a");
    expect_bad(s, &r, "size");
    r.size = ANNOUNCE_SIZE_MAX + 1;
    expect_bad(s, &r, "size");
    r.size = ANNOUNCE_SIZE_MAX; /* the largest is fine */
    assert_int_equal(tracker_announce(s, &r, 1000, &R), 0);
    assert_int_equal(R.pieces, 4096);

    base_req(&r, DIG_B, 20 * PL, NULL);
    expect_bad(s, &r, "agent");
    for (size_t i = 0; i < sizeof(bad_agents) / sizeof(bad_agents[0]); i++) {
        r.agent = bad_agents[i];
        expect_bad(s, &r, "agent");
    }
    memset(longs, 'x', sizeof(longs));
    longs[ANNOUNCE_AGENT_MAX + 1] = '\0';
    r.agent = longs;
    expect_bad(s, &r, "agent");
    longs[ANNOUNCE_AGENT_MAX] = '\0';
    assert_int_equal(tracker_announce(s, &r, 1000, &R), 0);
    r.agent = "node-17_4f2a9c:x@y.z";
    assert_int_equal(tracker_announce(s, &r, 1000, &R), 0);

    base_req(&r, DIG_B, 20 * PL, "a");
    r.addr = NULL;
    expect_bad(s, &r, "addr");
    for (size_t i = 0; i < sizeof(bad_addrs) / sizeof(bad_addrs[0]); i++) {
        r.addr = bad_addrs[i];
        expect_bad(s, &r, "addr");
    }
    memset(longs, 'h', sizeof(longs));
    memcpy(longs + ANNOUNCE_ADDR_MAX - 5, ":5081", 6);
    r.addr = longs + 1; /* one short of the cap */
    assert_int_equal(tracker_announce(s, &r, 1000, &R), 0);
    r.addr = longs; /* ANNOUNCE_ADDR_MAX + 1 long... */
    memset(longs, 'h', sizeof(longs));
    memcpy(longs + ANNOUNCE_ADDR_MAX - 4, ":5081", 6);
    expect_bad(s, &r, "addr");
    for (size_t i = 0; i < sizeof(good_addrs) / sizeof(good_addrs[0]); i++) {
        r.addr = good_addrs[i];
        assert_int_equal(tracker_announce(s, &r, 1000, &R), 0);
    }

    base_req(&r, DIG_B, 20 * PL, "a");
    r.event = (enum announce_event)17;
    expect_bad(s, &r, "event");
    base_req(&r, DIG_B, 20 * PL, "a");
    r.have = 21;
    expect_bad(s, &r, "have");
    r.have = 20;
    assert_int_equal(tracker_announce(s, &r, 1000, &R), 0);
    base_req(&r, DIG_B, 20 * PL, "a");
    r.hashes = &h;
    r.nhashes = 1;
    expect_bad(s, &r, "hashes");
    base_req(&r, DIG_B, 20 * PL, "a");
    r.lease_failed = &failed;
    r.nlease_failed = 1;
    expect_bad(s, &r, "lease_failed");
    /* Range checks use the piece count of a swarm not created yet, too. */
    base_req(&r, DIG_C, 3 * PL, "a");
    r.have = 4;
    expect_bad(s, &r, "have");

    /* Refused announces changed nothing. */
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.swarms, 2);
    assert_int_equal(st.peers, 4); /* a on A; xx..x, node-17.., a on B */
    tracker_swarms_destroy(s);
}

static void test_caps(void **state)
{
    struct tracker_swarms_config cfg;
    struct tracker_swarms *s;
    struct announce_req r;
    struct tracker_stats st;
    struct tracker_swarm_info info;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.max_swarms = 2;
    cfg.max_swarm_peers = 2;
    s = mk(&cfg);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 0), 0);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "b", false, 0), 0);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "c", false, 0), SHOAL_EBUSY);
    assert_non_null(strstr(R.error, "too many peers"));
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", false, 0), 0); /* known peers still fine */
    assert_int_equal(ann(s, DIG_B, 20 * PL, "a", false, 0), 0);
    assert_int_equal(ann(s, DIG_C, 20 * PL, "a", false, 0), SHOAL_EBUSY);
    assert_non_null(strstr(R.error, "too many swarms"));
    /* A peerless swarm (kept for its hashes) gives way to a new one. */
    assert_int_equal(ann_hash(s, "a", 0, 1, false, 0), 0);
    assert_int_equal(R.hashes_accepted, 1);
    base_req(&r, DIG_A, 20 * PL, "a");
    r.event = ANNOUNCE_EVENT_STOPPED;
    assert_int_equal(tracker_announce(s, &r, 0, &R), 0);
    r.agent = "b";
    assert_int_equal(tracker_announce(s, &r, 0, &R), 0);
    assert_int_equal(ann(s, DIG_C, 20 * PL, "a", false, 0), 0);
    assert_false(find_swarm(s, DIG_A, 0, &info));
    assert_true(find_swarm(s, DIG_B, 0, &info));
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.swarms, 2);
    assert_int_equal(st.peers, 2);
    tracker_swarms_destroy(s);
}

/* --- Bad peers -------------------------------------------------------------------------------- */

/* An announce in DIG_A from agent at addr, reporting nbad bad peers. */
static int ann_bad(struct tracker_swarms *s, const char *agent, const char *addr,
                   const char *const *bad, size_t nbad, uint64_t now)
{
    struct announce_req r;

    base_req(&r, DIG_A, 20 * PL, agent);
    r.addr = addr;
    r.bad_peers = bad;
    r.nbad_peers = nbad;
    return tracker_announce(s, &r, now, &R);
}

static bool reply_has_addr(const char *addr)
{
    for (size_t i = 0; i < R.npeers; i++) {
        if (strcmp(R.peers[i].addr, addr) == 0)
            return true;
    }
    return false;
}

static void test_bad_peer_report(void **state)
{
    static const char *const bad_b[] = {"10.0.0.2:5081"};
    static const char *const bad_d[] = {"10.0.0.4:5081"};
    struct tracker_swarms_config cfg;
    struct tracker_swarms *s;
    struct announce_req r;
    struct tracker_stats st;
    struct tracker_swarm_info info;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.bad_peer_reporters = 1; /* one report hides: the mechanism itself */
    cfg.bad_peer_ms = 20000;
    s = mk(&cfg);
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 1000), 0);
    assert_int_equal(ann_bad(s, "b", "10.0.0.2:5081", NULL, 0, 1000), 0);
    assert_int_equal(ann(s, DIG_B, 20 * PL, "b", false, 1000), 0); /* b is in B too */
    assert_int_equal(R.suspect_ms, 0);
    assert_int_equal(ann_bad(s, "c", "10.0.0.3:5081", NULL, 0, 1000), 0);
    assert_true(reply_has_peer("b"));

    /* c reports b: b is left out of every hand-out of A, the reporter's
     * own included, from this very reply on. */
    assert_int_equal(ann_bad(s, "c", "10.0.0.3:5081", bad_b, 1, 2000), 0);
    assert_int_equal(R.suspect_ms, 20000);
    assert_false(reply_has_peer("b"));
    assert_true(reply_has_peer("a"));
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 2000), 0);
    assert_int_equal(R.npeers, 1);
    assert_string_equal(R.peers[0].agent, "c");
    /* b stays in the swarm and still gets peers itself. */
    assert_int_equal(ann_bad(s, "b", "10.0.0.2:5081", NULL, 0, 3000), 0);
    assert_int_equal(R.npeers, 2);
    assert_true(find_swarm(s, DIG_A, 3000, &info));
    assert_int_equal(info.peers, 3);
    /* The mark is per swarm: b is handed out in B. */
    assert_int_equal(ann(s, DIG_B, 20 * PL, "a", false, 3000), 0);
    assert_true(reply_has_peer("b"));

    /* An address no peer has yet is marked too: d announcing later with it
     * is not handed out. A stopped announce's reports count as well. */
    base_req(&r, DIG_A, 20 * PL, "c");
    r.addr = "10.0.0.3:5081";
    r.event = ANNOUNCE_EVENT_STOPPED;
    r.bad_peers = bad_d;
    r.nbad_peers = 1;
    assert_int_equal(tracker_announce(s, &r, 4000, &R), 0);
    assert_int_equal(R.suspect_ms, 20000);
    assert_int_equal(ann_bad(s, "d", "10.0.0.4:5081", NULL, 0, 5000), 0);
    assert_true(reply_has_peer("a"));
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 5000), 0);
    assert_int_equal(R.npeers, 0);

    /* The mark on b ends 20 s after the report, even before the expiry
     * pass; d's (reported at 4 s) a little later. Keep everyone alive. */
    for (uint64_t t = 8000; t <= 20000; t += 6000) {
        assert_int_equal(ann_bad(s, "b", "10.0.0.2:5081", NULL, 0, t), 0);
        assert_int_equal(ann_bad(s, "d", "10.0.0.4:5081", NULL, 0, t), 0);
        assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, t), 0);
    }
    tracker_expire(s, 21999);
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 21999), 0);
    assert_int_equal(R.npeers, 0);
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 22000), 0);
    assert_int_equal(R.npeers, 1);
    assert_string_equal(R.peers[0].agent, "b");
    tracker_expire(s, 24000);
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 24000), 0);
    assert_int_equal(R.npeers, 2);
    assert_true(reply_has_peer("d"));

    /* A second report extends the mark from its own time. */
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", bad_b, 1, 24000), 0);
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", bad_b, 1, 30000), 0);
    for (uint64_t t = 32000; t <= 48000; t += 8000) {
        assert_int_equal(ann_bad(s, "b", "10.0.0.2:5081", NULL, 0, t), 0);
        assert_int_equal(ann_bad(s, "d", "10.0.0.4:5081", NULL, 0, t), 0);
        assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, t), 0);
        assert_false(reply_has_peer("b"));
    }
    tracker_expire(s, 49999);
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 49999), 0);
    assert_false(reply_has_peer("b"));
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 50000), 0);
    assert_true(reply_has_peer("b"));

    tracker_swarms_stats(s, &st);
    assert_int_equal(st.bad_peer_reports, 4);
    tracker_swarms_destroy(s);
}

/* With bad-peer-time 0, reports are counted and nothing is left out. */
static void test_bad_peer_off(void **state)
{
    static const char *const bad_b[] = {"10.0.0.2:5081", "10.0.0.2:5081"};
    struct tracker_swarms_config cfg;
    struct tracker_swarms *s;
    struct announce_req r;
    struct tracker_stats st;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.bad_peer_reporters = 1; /* one report hides: the mechanism itself */
    cfg.bad_peer_off = true;
    s = mk(&cfg);
    assert_int_equal(ann_bad(s, "b", "10.0.0.2:5081", NULL, 0, 1000), 0);
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", bad_b, 2, 1000), 0);
    assert_int_equal(R.suspect_ms, 0);
    assert_true(reply_has_peer("b"));
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.bad_peer_reports, 2);
    tracker_swarms_destroy(s);

    /* The default mark is 5 minutes. A suspect seed does not take one of
     * the max_peers slots: the next best peer gets it. */
    memset(&cfg, 0, sizeof(cfg));
    cfg.bad_peer_reporters = 1; /* one report hides: the mechanism itself */
    cfg.max_peers = 1;
    s = mk(&cfg);
    base_req(&r, DIG_A, 20 * PL, "b");
    r.addr = "10.0.0.2:5081";
    r.complete = true;
    r.have = 20;
    assert_int_equal(tracker_announce(s, &r, 0, &R), 0);
    assert_int_equal(ann_bad(s, "c", "10.0.0.3:5081", NULL, 0, 0), 0);
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 0), 0);
    assert_int_equal(R.npeers, 1);
    assert_string_equal(R.peers[0].agent, "b");
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", bad_b, 1, 0), 0);
    assert_int_equal(R.suspect_ms, 300000);
    assert_int_equal(R.npeers, 1);
    assert_string_equal(R.peers[0].agent, "c");
    tracker_swarms_destroy(s);

    memset(&cfg, 0, sizeof(cfg));
    cfg.bad_peer_reporters = 1; /* one report hides: the mechanism itself */
    cfg.bad_peer_ms = TRACKER_MAX_BAD_PEER_MS + 1;
    assert_int_equal(tracker_swarms_create(&cfg, &s), SHOAL_ECONFIG);
}

static void test_bad_peer_input(void **state)
{
    static const char *const bad_addrs[] = {"",
                                            "10.0.0.2",
                                            "10.0.0.2:",
                                            "10.0.0.2:0",
                                            "10.0.0.2:65536",
                                            ":5081",
                                            "0.0.0.0:5081",
                                            "[::]:5081",
                                            "::1:5081",
                                            "host name:1",
                                            "10.0.0.2:50x",
                                            "a\"b:1"};
    const char *list[ANNOUNCE_BAD_PEERS_MAX + 1];
    char addrs[ANNOUNCE_BAD_PEERS_MAX + 1][32];
    char longs[ANNOUNCE_ADDR_MAX + 2];
    struct tracker_swarms *s = mk(NULL);
    struct tracker_stats st;

    (void)state;
    assert_int_equal(ann_bad(s, "b", "10.0.0.2:5081", NULL, 0, 1000), 0);
    for (size_t i = 0; i < sizeof(bad_addrs) / sizeof(bad_addrs[0]); i++) {
        /* A bad entry anywhere in the list refuses the whole announce. */
        list[0] = "10.0.0.2:5081";
        list[1] = bad_addrs[i];
        assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", list, 2, 1000), SHOAL_EPARSE);
        if (strncmp(R.error, "bad_peers: entry 1 ", 19) != 0)
            fail_msg("error \"%s\" for \"%s\"", R.error, bad_addrs[i]);
    }
    list[0] = NULL;
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", list, 1, 1000), SHOAL_EPARSE);
    assert_non_null(strstr(R.error, "bad_peers:"));
    memset(longs, 'h', sizeof(longs));
    memcpy(longs + ANNOUNCE_ADDR_MAX - 4, ":5081", 6); /* one past the cap */
    list[0] = longs;
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", list, 1, 1000), SHOAL_EPARSE);
    assert_non_null(strstr(R.error, "bad_peers:"));

    /* At most 64 entries. */
    for (size_t i = 0; i <= ANNOUNCE_BAD_PEERS_MAX; i++) {
        snprintf(addrs[i], sizeof(addrs[i]), "10.2.0.%zu:5081", i + 1);
        list[i] = addrs[i];
    }
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", list, ANNOUNCE_BAD_PEERS_MAX + 1, 1000),
                     SHOAL_EPARSE);
    assert_string_equal(R.error, "bad_peers: more than 64 entries");

    /* Refused announces changed nothing: a never joined, b is handed out. */
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.bad_peer_reports, 0);
    assert_int_equal(st.peers, 1);
    assert_int_equal(st.announces, 1);
    assert_int_equal(ann_bad(s, "c", "10.0.0.3:5081", NULL, 0, 1000), 0);
    assert_true(reply_has_peer("b"));

    /* 64 is fine, and so are other address forms. */
    list[0] = "[::1]:5081";
    list[1] = "node-17.example:5081";
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", list, ANNOUNCE_BAD_PEERS_MAX, 1000), 0);
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.bad_peer_reports, ANNOUNCE_BAD_PEERS_MAX);
    tracker_swarms_destroy(s);
}

/* By default one agent's report hides nobody: two distinct agents must
 * report an address (the same one twice counts once). */
static void test_bad_peer_quorum(void **state)
{
    static const char *const bad_b[] = {"10.0.0.2:5081"};
    struct tracker_swarms *s = mk(NULL);
    struct tracker_stats st;

    (void)state;
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 1000), 0);
    assert_int_equal(ann_bad(s, "b", "10.0.0.2:5081", NULL, 0, 1000), 0);
    assert_int_equal(ann_bad(s, "c", "10.0.0.3:5081", NULL, 0, 1000), 0);
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", bad_b, 1, 2000), 0);
    assert_true(reply_has_peer("b"));
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", bad_b, 1, 2100), 0);
    assert_true(reply_has_peer("b"));
    assert_int_equal(ann_bad(s, "c", "10.0.0.3:5081", NULL, 0, 2200), 0);
    assert_true(reply_has_peer("b"));
    /* A second agent agrees: b is hidden from everyone. */
    assert_int_equal(ann_bad(s, "c", "10.0.0.3:5081", bad_b, 1, 3000), 0);
    assert_false(reply_has_peer("b"));
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 3100), 0);
    assert_false(reply_has_peer("b"));
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.bad_peer_reports, 3);
    tracker_swarms_destroy(s);
}

/* One agent cannot fill the swarm table with made-up digests. */
static void test_swarms_per_agent(void **state)
{
    struct tracker_swarms_config cfg = {.max_swarms_per_agent = 3};
    struct tracker_swarms *s = mk(&cfg);
    char dig[80];
    struct tracker_stats st;

    (void)state;
    for (int i = 0; i < 3; i++) {
        snprintf(dig, sizeof(dig), "sha256:%064d", i);
        assert_int_equal(ann(s, dig, 20 * PL, "greedy", false, 1000), 0);
    }
    snprintf(dig, sizeof(dig), "sha256:%064d", 3);
    assert_int_equal(ann(s, dig, 20 * PL, "greedy", false, 1000), SHOAL_EBUSY);
    assert_non_null(strstr(R.error, "greedy"));
    /* Others are not limited by it, and joining its swarms is fine. */
    assert_int_equal(ann(s, dig, 20 * PL, "honest", false, 1000), 0);
    assert_int_equal(ann(s, dig, 20 * PL, "greedy", false, 1000), 0);
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.swarms_refused, 1);
    tracker_swarms_destroy(s);
}

/* The suspects of a swarm are capped; the mark expiring first gives way. */
static void test_bad_peer_cap(void **state)
{
    char addrs[TRACKER_MAX_SUSPECTS + 1][32];
    const char *one[1];
    struct tracker_swarms_config cfg = {.bad_peer_reporters = 1};
    struct tracker_swarms *s = mk(&cfg);
    uint64_t t = 1000;

    (void)state;
    for (size_t i = 0; i <= TRACKER_MAX_SUSPECTS; i++)
        snprintf(addrs[i], sizeof(addrs[i]), "10.1.%zu.%zu:5081", i / 200, i % 200 + 1);
    assert_int_equal(ann_bad(s, "x0", addrs[0], NULL, 0, t), 0);
    assert_int_equal(ann_bad(s, "x1", addrs[1], NULL, 0, t), 0);
    assert_int_equal(ann_bad(s, "x2", addrs[2], NULL, 0, t), 0);
    /* Fill the cap, one report a millisecond, oldest first. */
    for (size_t i = 0; i < TRACKER_MAX_SUSPECTS; i++) {
        one[0] = addrs[i];
        assert_int_equal(ann_bad(s, "r", "10.0.0.1:5081", one, 1, t++), 0);
    }
    assert_int_equal(R.npeers, 0);
    /* A fresh report of addrs[0] makes addrs[1] the first to expire. */
    one[0] = addrs[0];
    assert_int_equal(ann_bad(s, "r", "10.0.0.1:5081", one, 1, t++), 0);
    one[0] = addrs[TRACKER_MAX_SUSPECTS];
    assert_int_equal(ann_bad(s, "r", "10.0.0.1:5081", one, 1, t++), 0);
    assert_int_equal(R.npeers, 1);
    assert_string_equal(R.peers[0].agent, "x1");
    /* One more: addrs[2] goes next; addrs[0] and the new ones stay. */
    one[0] = "10.9.9.9:5081";
    assert_int_equal(ann_bad(s, "r", "10.0.0.1:5081", one, 1, t++), 0);
    assert_int_equal(R.npeers, 2);
    assert_true(reply_has_addr(addrs[1]) && reply_has_addr(addrs[2]));
    tracker_swarms_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_mismatch),
        cmocka_unit_test(test_field_bounds),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_bad_peer_report),
        cmocka_unit_test(test_bad_peer_off),
        cmocka_unit_test(test_bad_peer_input),
        cmocka_unit_test(test_bad_peer_cap),
        cmocka_unit_test(test_bad_peer_quorum),
        cmocka_unit_test(test_swarms_per_agent),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
