/* Unit tests for piece choice (agent/swarm/piece_picker.c) at large: a random
 * swarm run checked step by step against a model of the picker kept by the
 * test, and the sizes the header promises (65536 pieces, 200 peers). The
 * hand-written cases are in test_piece_picker.c; shared helpers in
 * test_piece_picker_fixture.h.
 */
#include "test_piece_picker_fixture.h"

/* A model of the picker kept by the test, checked against it. */
struct model {
    uint32_t n, npeers;
    bool have[600], hash[600], excl[600];
    bool has[40][600], infl[40][600];
    bool present[40];
};

static uint32_t m_avail(const struct model *m, uint32_t i)
{
    uint32_t p, a = 0;

    for (p = 0; p < m->npeers; p++)
        a += m->present[p] && m->has[p][i];
    return a;
}

static uint32_t m_infl(const struct model *m, uint32_t i)
{
    uint32_t p, a = 0;

    for (p = 0; p < m->npeers; p++)
        a += m->present[p] && m->infl[p][i];
    return a;
}

static bool m_endgame(const struct model *m)
{
    uint32_t i, wanted = 0;

    for (i = 0; i < m->n; i++) {
        if (m->have[i] || m->excl[i])
            continue;
        wanted++;
        if (!m->hash[i] || m_infl(m, i) == 0)
            return false;
    }
    return wanted > 0;
}

/* Checks that the picker's choice of piece got for peer p is one the rules
 * allow: minimal availability among the normal candidates, or minimal
 * request count among the end-game ones. got < 0 means it found nothing. */
static void m_check_pick(const struct model *m, uint32_t p, int64_t got)
{
    uint32_t i, best = UINT32_MAX;
    bool eg = m_endgame(m);

    for (i = 0; i < m->n; i++)
        if (!m->have[i] && !m->excl[i] && m->hash[i] && m_infl(m, i) == 0 && m->has[p][i] &&
            m_avail(m, i) < best)
            best = m_avail(m, i);
    if (best != UINT32_MAX) {
        assert_true(got >= 0);
        i = (uint32_t)got;
        assert_true(!m->have[i] && !m->excl[i] && m->hash[i] && m_infl(m, i) == 0 && m->has[p][i]);
        assert_int_equal(m_avail(m, i), best);
        return;
    }
    if (eg)
        for (i = 0; i < m->n; i++)
            if (!m->have[i] && !m->excl[i] && m->has[p][i] && !m->infl[p][i] && m_infl(m, i) < best)
                best = m_infl(m, i);
    if (best == UINT32_MAX) {
        assert_true(got < 0);
        return;
    }
    assert_true(got >= 0);
    i = (uint32_t)got;
    assert_true(!m->have[i] && !m->excl[i] && m->has[p][i] && !m->infl[p][i]);
    assert_int_equal(m_infl(m, i), best);
}

/* A random swarm run against the model: peers come and go, announce pieces,
 * requests succeed and fail, hashes arrive, leases change; after every step
 * the picker's counters must match the model and every pick must obey the
 * rules. */
static void test_random_against_model(void **state)
{
    struct model *m = calloc(1, sizeof(*m));
    struct rng r = {2024, 0}, pr = {99, 0};
    struct piece_picker *pp;
    uint32_t step, i, p, dup_picks = 0;
    int trial;

    (void)state;
    assert_non_null(m);
    for (trial = 0; trial < 6; trial++) {
        memset(m, 0, sizeof(*m));
        m->n = trial == 0 ? 1 : trial == 1 ? 9 : 60 * (uint32_t)trial;
        m->npeers = 5 + 7 * (uint32_t)trial;
        pp = piece_picker_create(m->n);
        assert_non_null(pp);
        for (step = 0; step < 50000 && !piece_picker_complete(pp); step++) {
            uint32_t op = rng_next(&r) % 100, idx;
            int rc;

            p = rng_next(&r) % m->npeers;
            i = rng_next(&r) % m->n;
            if (op < 5) { /* connect or disconnect */
                if (m->present[p]) {
                    assert_int_equal(piece_picker_peer_remove(pp, PEER(p)), 0);
                    m->present[p] = false;
                    memset(m->infl[p], 0, sizeof(m->infl[p]));
                } else {
                    uint8_t bf[600 / 8 + 1] = {0};
                    uint32_t j, density = rng_next(&r) % 4;

                    for (j = 0; j < m->n; j++) {
                        m->has[p][j] = density && rng_next(&r) % 4 < density;
                        if (m->has[p][j])
                            bf[j / 8] |= (uint8_t)(0x80u >> (j % 8));
                    }
                    assert_int_equal(piece_picker_peer_add(pp, PEER(p), bf, (m->n + 7) / 8), 0);
                    m->present[p] = true;
                }
            } else if (op < 15) { /* HAVE */
                rc = piece_picker_peer_have(pp, PEER(p), i);
                assert_int_equal(rc, m->present[p] ? 0 : SHOAL_ENOT_FOUND);
                if (m->present[p])
                    m->has[p][i] = true;
            } else if (op < 25) { /* a hash arrives */
                assert_int_equal(piece_picker_set_hash_known(pp, i), 0);
                m->hash[i] = true;
            } else if (op < 28) { /* lease changes */
                bool ex = rng_next(&r) % 2;
                assert_int_equal(piece_picker_set_excluded(pp, i, ex), 0);
                m->excl[i] = ex;
            } else if (op < 30) { /* upstream piece done */
                struct cancels c = {0};
                uint32_t want = m_infl(m, i), q;

                rc = piece_picker_mark_have(pp, i, on_cancel, &c);
                assert_int_equal(rc, m->have[i] ? 0 : (int)want);
                for (q = 0; q < m->npeers; q++)
                    if (m->present[q] && m->infl[q][i]) {
                        assert_true(cancelled(&c, PEER(q), i));
                        m->infl[q][i] = false;
                    }
                m->have[i] = true;
            } else if (op < 70) { /* pick */
                if (!m->present[p]) {
                    assert_int_equal(pick(pp, PEER(p), &pr, &idx), SHOAL_ENOT_FOUND);
                    continue;
                }
                rc = pick(pp, PEER(p), &pr, &idx);
                assert_true(rc == 0 || rc == -EAGAIN);
                m_check_pick(m, p, rc == 0 ? (int64_t)idx : -1);
                if (rc == 0) {
                    dup_picks += m_infl(m, idx) > 0;
                    m->infl[p][idx] = true;
                }
            } else { /* a request of p ends */
                uint32_t j, k = rng_next(&r) % m->n;

                if (!m->present[p])
                    continue;
                for (j = 0; j < m->n; j++)
                    if (m->infl[p][(k + j) % m->n])
                        break;
                if (j == m->n) {
                    assert_int_equal(piece_picker_request_failed(pp, PEER(p), k), SHOAL_ENOT_FOUND);
                    continue;
                }
                k = (k + j) % m->n;
                if (op < 85) {
                    struct cancels c = {0};
                    uint32_t q, others = m_infl(m, k) - 1;

                    rc = piece_picker_request_done(pp, PEER(p), k, on_cancel, &c);
                    assert_int_equal(rc, (int)others);
                    assert_int_equal(c.n, others);
                    m->infl[p][k] = false;
                    for (q = 0; q < m->npeers; q++)
                        if (m->present[q] && m->infl[q][k]) {
                            assert_true(cancelled(&c, PEER(q), k));
                            m->infl[q][k] = false;
                        }
                    m->have[k] = true;
                } else {
                    assert_int_equal(piece_picker_request_failed(pp, PEER(p), k), 0);
                    m->infl[p][k] = false;
                }
            }

            /* Cheap invariants every step, full ones now and then. */
            assert_int_equal(piece_picker_availability(pp, i), m_avail(m, i));
            assert_int_equal(piece_picker_inflight_count(pp, i), m_infl(m, i));
            if (step % 97 == 0) {
                uint32_t miss = 0;

                for (i = 0; i < m->n; i++) {
                    miss += !m->have[i];
                    assert_int_equal(piece_picker_availability(pp, i), m_avail(m, i));
                    assert_int_equal(piece_picker_inflight_count(pp, i), m_infl(m, i));
                    assert_int_equal(piece_picker_have(pp, i), m->have[i]);
                    for (p = 0; p < m->npeers; p++)
                        assert_int_equal(piece_picker_inflight(pp, PEER(p), i),
                                         m->present[p] && m->infl[p][i]);
                }
                assert_int_equal(piece_picker_missing(pp), miss);
                assert_int_equal(piece_picker_endgame(pp), m_endgame(m));
            }
        }
        /* Every run ends with the whole blob, through end-game. */
        assert_true(piece_picker_complete(pp));
        piece_picker_destroy(pp);
    }
    assert_true(dup_picks >= 20);
    free(m);
}

/* The sizes the header promises: 65536 pieces, 200 peers. */
static void test_scale(void **state)
{
    const uint32_t n = 65536, npeers = 200;
    struct piece_picker *pp = make(n);
    struct rng r = {5, 0};
    uint8_t *bf = calloc(n / 8, 1);
    uint32_t p, i, idx, prev = 0;

    (void)state;
    assert_non_null(bf);
    /* Peer p has piece i when i % 200 >= p: piece i's availability is
     * (i % 200) + 1 from these peers. */
    for (p = 0; p < npeers; p++) {
        memset(bf, 0, n / 8);
        for (i = 0; i < n; i++)
            if (i % 200 >= p)
                bf_set(bf, i);
        assert_int_equal(piece_picker_peer_add(pp, PEER(p), bf, n / 8), 0);
    }
    assert_int_equal(piece_picker_npeers(pp), npeers);
    /* Peer 0 has everything; its picks come in non-decreasing rarity. */
    for (i = 0; i < 2000; i++) {
        assert_int_equal(pick(pp, PEER(0), &r, &idx), 0);
        assert_true(idx % 200 >= prev);
        prev = idx % 200;
    }
    assert_int_equal(prev, (2000 - 1) / 328); /* 328 pieces per rarity class */
    for (p = npeers; p-- > 0;)
        assert_int_equal(piece_picker_peer_remove(pp, PEER(p)), 0);
    for (i = 0; i < n; i++)
        assert_int_equal(piece_picker_availability(pp, i), 0);
    free(bf);
    piece_picker_destroy(pp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_scale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
