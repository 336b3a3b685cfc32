/* Tests for the agent inventory (tracker/agents.c) and selectors
 * (tracker/selector.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "agents.h"
#include "selector.h"
#include "shoal/error.h"

static struct agent_info info(const char *name, const char *url, const char *labels)
{
    struct agent_info a;
    char err[128];
    memset(&a, 0, sizeof(a));
    snprintf(a.name, sizeof(a.name), "%s", name);
    snprintf(a.mirror_url, sizeof(a.mirror_url), "%s", url);
    assert_int_equal(agent_labels_parse(labels, a.labels, &a.nlabels, err, sizeof(err)), 0);
    return a;
}

static void gone_count(const struct tracker_agent *ag, void *arg)
{
    (void)ag;
    (*(int *)arg)++;
}

static void test_inventory(void **state)
{
    struct tracker_agents *inv;
    (void)state;
    assert_int_equal(tracker_agents_create(0, 0, &inv), SHOAL_ECONFIG);
    assert_int_equal(tracker_agents_create(1000, 2, &inv), 0);
    struct agent_info a = info("a", "http://10.0.0.1:5080", "zone=x");
    struct agent_info b = info("b", "http://10.0.0.2:5080", "zone=y");
    struct agent_info c = info("c", "http://10.0.0.3:5080", "");
    assert_int_equal(tracker_agents_heartbeat(inv, &a, "10.0.0.1:4000", 0), 1);
    assert_int_equal(tracker_agents_heartbeat(inv, &b, "[::1]:4001", 0), 1);
    assert_int_equal(tracker_agents_heartbeat(inv, &c, "10.0.0.3:1", 0), SHOAL_EBUSY);
    /* A refresh, then a move to another URL (a new registration). */
    assert_int_equal(tracker_agents_heartbeat(inv, &a, "10.0.0.1:4000", 500), 0);
    assert_int_equal(tracker_agents_count(inv), 2);
    const struct tracker_agent *ta = tracker_agents_find(inv, "a");
    assert_non_null(ta);
    assert_string_equal(ta->remote, "10.0.0.1");
    assert_int_equal(ta->last_seen_ms, 500);
    assert_int_equal(ta->first_seen_ms, 0);
    assert_string_equal(tracker_agents_find(inv, "b")->remote, "::1");
    a = info("a", "http://10.0.0.9:5080", "zone=x");
    assert_int_equal(tracker_agents_heartbeat(inv, &a, "10.0.0.9:4000", 600), 1);
    assert_int_equal(tracker_agents_find(inv, "a")->first_seen_ms, 600);
    assert_null(tracker_agents_find(inv, "zzz"));

    /* b is silent past the timeout; a is not. */
    int gone = 0;
    assert_int_equal(tracker_agents_expire(inv, 1000, gone_count, &gone), 0);
    assert_int_equal(tracker_agents_expire(inv, 1001, gone_count, &gone), 1);
    assert_int_equal(gone, 1);
    assert_int_equal(tracker_agents_count(inv), 1);
    assert_null(tracker_agents_find(inv, "b"));
    assert_string_equal(tracker_agents_at(inv, 0)->info.name, "a");
    assert_null(tracker_agents_at(inv, 1));
    /* The index follows the compaction. */
    assert_int_equal(tracker_agents_heartbeat(inv, &c, "10.0.0.3:1", 1100), 1);
    assert_string_equal(tracker_agents_find(inv, "c")->info.name, "c");
    assert_int_equal(tracker_agents_expire(inv, 5000, NULL, NULL), 2);
    assert_int_equal(tracker_agents_count(inv), 0);
    tracker_agents_destroy(inv);
}

static void test_selector_parse(void **state)
{
    struct tracker_selector s;
    char err[256], text[512];
    (void)state;
    assert_int_equal(tracker_selector_parse(" zone = a , pool!=cpu,node=n1,node=10.0.0.2,count=2",
                                            &s, err, sizeof(err)),
                     0);
    assert_int_equal(s.nterms, 2);
    assert_string_equal(s.terms[0].key, "zone");
    assert_false(s.terms[0].negate);
    assert_true(s.terms[1].negate);
    assert_int_equal(s.nnodes, 2);
    assert_int_equal(s.count, 2);
    tracker_selector_format(&s, text, sizeof(text));
    assert_string_equal(text, "zone=a,pool!=cpu,node=n1,node=10.0.0.2,count=2");
    for (const char *all = "all"; all; all = strcmp(all, "all") == 0 ? "*" : NULL) {
        assert_int_equal(tracker_selector_parse(all, &s, err, sizeof(err)), 0);
        tracker_selector_format(&s, text, sizeof(text));
        assert_string_equal(text, "all");
    }
    assert_int_equal(tracker_selector_parse("", &s, err, sizeof(err)), 0);
    assert_int_equal(tracker_selector_parse(NULL, &s, err, sizeof(err)), 0);

    static const char *const bad[] = {
        "zone",    "count=0", "count=x", "percent=101", "percent=-1", "count=1,count=2",
        "node!=a", "=a",      "a=b c",   "node=",       "count=+3",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (tracker_selector_parse(bad[i], &s, err, sizeof(err)) != SHOAL_EPARSE)
            fail_msg("\"%s\" accepted", bad[i]);
        assert_true(strncmp(err, "selector: ", 10) == 0);
    }

    json_t *j = json_loads("{\"labels\":{\"zone\":\"a\"},\"not_labels\":{\"pool\":\"cpu\"},"
                           "\"nodes\":[\"n1\"],\"count\":3,\"percent\":50}",
                           0, NULL);
    assert_int_equal(tracker_selector_from_json(j, &s, err, sizeof(err)), 0);
    json_decref(j);
    tracker_selector_format(&s, text, sizeof(text));
    assert_string_equal(text, "zone=a,pool!=cpu,node=n1,count=3,percent=50");
    j = json_string("pool=gpu");
    assert_int_equal(tracker_selector_from_json(j, &s, err, sizeof(err)), 0);
    json_decref(j);
    assert_int_equal(s.nterms, 1);
    static const char *const badj[] = {"[]",
                                       "{\"labels\":[]}",
                                       "{\"nodes\":[1]}",
                                       "{\"count\":0}",
                                       "{\"percent\":200}",
                                       "{\"x\":1}",
                                       "7"};
    for (size_t i = 0; i < sizeof(badj) / sizeof(badj[0]); i++) {
        j = json_loads(badj[i], JSON_DECODE_ANY, NULL);
        assert_int_equal(tracker_selector_from_json(j, &s, err, sizeof(err)), SHOAL_EPARSE);
        json_decref(j);
    }

    /* and: terms add up, the smaller limits win, nodes only when none. */
    struct tracker_selector base, narrow;
    assert_int_equal(tracker_selector_parse("zone=a,count=5", &base, err, sizeof(err)), 0);
    assert_int_equal(tracker_selector_parse("seed=true,count=2,node=x", &narrow, err, sizeof(err)),
                     0);
    assert_int_equal(tracker_selector_and(&base, &narrow), 0);
    tracker_selector_format(&base, text, sizeof(text));
    assert_string_equal(text, "zone=a,seed=true,node=x,count=2");
}

static void test_selector_pick(void **state)
{
    struct tracker_agents *inv;
    struct tracker_selector s;
    const struct tracker_agent *out[16];
    char err[256];
    (void)state;
    assert_int_equal(tracker_agents_create(1000, 0, &inv), 0);
    for (int i = 0; i < 10; i++) {
        char name[16], url[64], labels[64];
        snprintf(name, sizeof(name), "n%d", i);
        snprintf(url, sizeof(url), "http://host-%d.example:5080", i);
        snprintf(labels, sizeof(labels), "zone=%s,pool=%s", i < 5 ? "a" : "b",
                 i % 2 ? "gpu" : "cpu");
        struct agent_info a = info(name, url, labels);
        char remote[32];
        snprintf(remote, sizeof(remote), "10.0.0.%d:40000", i);
        assert_int_equal(tracker_agents_heartbeat(inv, &a, remote, 0), 1);
    }
    assert_int_equal(tracker_selector_parse("", &s, err, sizeof(err)), 0);
    assert_int_equal(tracker_selector_pick(&s, inv, 1, out, 16), 10);
    assert_int_equal(tracker_selector_pick(&s, inv, 1, out, 4), 4); /* bounded by max */
    assert_int_equal(tracker_selector_parse("zone=a,pool=gpu", &s, err, sizeof(err)), 0);
    assert_int_equal(tracker_selector_pick(&s, inv, 1, out, 16), 2); /* n1, n3 */
    assert_string_equal(out[0]->info.name, "n1");
    assert_string_equal(out[1]->info.name, "n3");
    assert_int_equal(tracker_selector_parse("pool!=gpu", &s, err, sizeof(err)), 0);
    assert_int_equal(tracker_selector_pick(&s, inv, 1, out, 16), 5);
    assert_int_equal(tracker_selector_parse("missing!=x", &s, err, sizeof(err)), 0);
    assert_int_equal(tracker_selector_pick(&s, inv, 1, out, 16), 10); /* absent != x */
    /* Nodes by name, by the address seen, by the mirror URL's host. */
    assert_int_equal(
        tracker_selector_parse("node=n2,node=10.0.0.7,node=host-9.example", &s, err, sizeof(err)),
        0);
    assert_int_equal(tracker_selector_pick(&s, inv, 1, out, 16), 3);
    assert_string_equal(out[0]->info.name, "n2");
    assert_string_equal(out[1]->info.name, "n7");
    assert_string_equal(out[2]->info.name, "n9");
    /* count and percent (rounded up); the choice depends on the salt only. */
    assert_int_equal(tracker_selector_parse("count=3", &s, err, sizeof(err)), 0);
    assert_int_equal(tracker_selector_pick(&s, inv, 42, out, 16), 3);
    const struct tracker_agent *again[16];
    assert_int_equal(tracker_selector_pick(&s, inv, 42, again, 16), 3);
    for (int i = 0; i < 3; i++)
        assert_ptr_equal(out[i], again[i]);
    bool differs = false;
    for (uint64_t salt = 1; salt < 50 && !differs; salt++) {
        assert_int_equal(tracker_selector_pick(&s, inv, salt, again, 16), 3);
        for (int i = 0; i < 3; i++)
            differs |= out[i] != again[i];
    }
    assert_true(differs); /* jobs spread over the agents */
    assert_int_equal(tracker_selector_parse("percent=25", &s, err, sizeof(err)), 0);
    assert_int_equal(tracker_selector_pick(&s, inv, 7, out, 16), 3);
    assert_int_equal(tracker_selector_parse("percent=25,count=2", &s, err, sizeof(err)), 0);
    assert_int_equal(tracker_selector_pick(&s, inv, 7, out, 16), 2);
    assert_int_equal(tracker_selector_parse("zone=b,count=100", &s, err, sizeof(err)), 0);
    assert_int_equal(tracker_selector_pick(&s, inv, 7, out, 16), 5);
    tracker_agents_destroy(inv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inventory),
        cmocka_unit_test(test_selector_parse),
        cmocka_unit_test(test_selector_pick),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
