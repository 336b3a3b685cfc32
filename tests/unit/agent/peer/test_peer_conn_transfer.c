/* Loop tests of agent/peer/peer_conn.c: traffic on an established connection.
 *
 * Covers BITFIELD/HAVE, pipelined piece transfers and out-of-order answers,
 * the max_inflight limit, CANCEL (including a cancel racing the answer),
 * request timeouts, KEEPALIVE and the idle timeout, and closing a connection
 * from inside each owner callback. The handshake and protocol violations are
 * in test_peer_conn.c; the shared fixture is test_peer_conn_fixture.h.
 * Built a second time with PEER_CONN_TEST_TLS (test_peer_conn_transfer_tls),
 * every connection runs inside TLS; the one test that needs the plaintext
 * evil peer is left out there.
 */
#define _GNU_SOURCE
#include "test_peer_conn_fixture.h"

#include <signal.h>

#include "peer/peer_conn_internal.h" /* the receive buffer, for test_idle_frees_piece_buffer */

static void answer(struct side *s, uint32_t index)
{
    assert_int_equal(peer_conn_send_piece(s->c, index, s->t->fd, (uint64_t)index * PLEN,
                                          wire_piece_size(BLOB_SIZE, PLEN, index)),
                     0);
}

/* ---- Tests: traffic ---------------------------------------------------------- */

static void bf_ready(struct side *s)
{
    uint8_t bits[1] = {0xa8}; /* pieces 0, 2, 4 */
    uint8_t bad[1] = {0xac};  /* a spare bit set */

    assert_int_equal(peer_conn_send_bitfield(s->c, bad), -EINVAL);
    assert_int_equal(peer_conn_send_bitfield(s->c, bits), 0);
    assert_int_equal(peer_conn_send_bitfield(s->c, bits), -EALREADY);
    assert_int_equal(peer_conn_send_have(s->c, NPIECES), -EINVAL);
    assert_int_equal(peer_conn_send_have(s->c, 3), 0);
}

static void bf_have(struct side *s, uint32_t index)
{
    (void)index;
    peer_conn_close(s->c, 0);
}

static void test_bitfield_have(void **state)
{
    struct tctx *t = *state;

    t->srv.h.ready = bf_ready;
    t->cli.h.have = bf_have;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.bitfields, 1);
    assert_int_equal(t->cli.bits[0], 0xa8);
    assert_int_equal(t->cli.haves, 1);
    assert_int_equal(t->cli.have_last, 3);
    assert_int_equal(t->srv.bitfields + t->srv.haves, 0);
    assert_int_equal(t->cli.reason, 0);
}

static void xfer_ready(struct side *s)
{
    uint32_t i;

    for (i = 0; i < 4; i++)
        assert_int_equal(peer_conn_request(s->c, i), 0);
    assert_int_equal(peer_conn_inflight(s->c), 4);
    assert_int_equal(peer_conn_request(s->c, 4), SHOAL_EBUSY);
    assert_int_equal(peer_conn_request(s->c, 0), -EALREADY);
    assert_int_equal(peer_conn_request(s->c, NPIECES), -EINVAL);
    assert_true(peer_conn_is_inflight(s->c, 3));
    assert_false(peer_conn_is_inflight(s->c, 4));
    s->next_req = 4;
}

static void xfer_piece(struct side *s, uint32_t index)
{
    (void)index;
    assert_true(peer_conn_inflight(s->c) < 4);
    if (s->next_req < NPIECES)
        assert_int_equal(peer_conn_request(s->c, s->next_req++), 0);
    if (s->got == (1u << NPIECES) - 1) {
        assert_int_equal(peer_conn_inflight(s->c), 0);
        peer_conn_close(s->c, 0);
    }
}

static void answer_now(struct side *s, uint32_t index)
{
    /* Not requested: refused. */
    assert_int_equal(peer_conn_send_piece(s->c, (index + 1) % NPIECES, s->t->fd, 0,
                                          wire_piece_size(BLOB_SIZE, PLEN, (index + 1) % NPIECES)),
                     SHOAL_ECANCELED);
    /* Wrong length: refused. */
    assert_int_equal(peer_conn_send_piece(s->c, index, s->t->fd, 0, 7), -EINVAL);
    answer(s, index);
    /* Answered already. */
    assert_int_equal(peer_conn_send_piece(s->c, index, s->t->fd, (uint64_t)index * PLEN,
                                          wire_piece_size(BLOB_SIZE, PLEN, index)),
                     SHOAL_ECANCELED);
}

static void test_transfer_pipelined(void **state)
{
    struct tctx *t = *state;

    t->cli.h.ready = xfer_ready;
    t->cli.h.piece = xfer_piece;
    t->srv.h.request = answer_now;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.pieces, NPIECES);
    assert_int_equal(t->cli.got, (1u << NPIECES) - 1);
    assert_int_equal(t->cli.piece_bad, 0);
    assert_int_equal(t->srv.requests, NPIECES);
    assert_int_equal(t->cli.reason, 0);
    assert_int_equal(t->srv.reason, 0);
}

static void gather_request(struct side *s, uint32_t index)
{
    unsigned i;

    s->pend[s->npend++] = index;
    if (s->npend < 4)
        return;
    for (i = 4; i-- > 0;)
        answer(s, s->pend[i]);
}

static void ooo_piece(struct side *s, uint32_t index)
{
    (void)index;
    if (s->pieces == 4)
        peer_conn_close(s->c, 0);
}

static void test_answers_out_of_order(void **state)
{
    struct tctx *t = *state;

    t->cli.h.ready = xfer_ready;
    t->cli.h.piece = ooo_piece;
    t->srv.h.request = gather_request;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.pieces, 4);
    assert_int_equal(t->cli.piece_bad, 0);
    assert_int_equal(t->cli.order[0], 3);
    assert_int_equal(t->cli.order[1], 2);
    assert_int_equal(t->cli.order[2], 1);
    assert_int_equal(t->cli.order[3], 0);
}

static void small_inflight_ready(struct side *s)
{
    assert_int_equal(peer_conn_request(s->c, 4), 0);
    assert_int_equal(peer_conn_request(s->c, 2), 0);
    assert_int_equal(peer_conn_request(s->c, 0), SHOAL_EBUSY);
    assert_int_equal(peer_conn_inflight(s->c), 2);
}

static void small_inflight_piece(struct side *s, uint32_t index)
{
    (void)index;
    if (s->pieces == 2)
        peer_conn_close(s->c, 0);
}

static void test_max_inflight_config(void **state)
{
    struct tctx *t = *state;

    t->ccfg.max_inflight = 2;
    t->cli.h.ready = small_inflight_ready;
    t->cli.h.piece = small_inflight_piece;
    t->srv.h.request = answer_now;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.pieces, 2);
    assert_int_equal(t->cli.got, (1u << 4) | (1u << 2));
    assert_int_equal(t->cli.piece_bad, 0);
    assert_int_equal(t->srv.requests, 2);
}

static void cancel_ready(struct side *s)
{
    assert_int_equal(peer_conn_request(s->c, 0), 0);
    assert_int_equal(peer_conn_request(s->c, 1), 0);
    assert_int_equal(peer_conn_cancel(s->c, 1), 0);
    assert_int_equal(peer_conn_cancel(s->c, 1), -ENOENT);
    assert_int_equal(peer_conn_inflight(s->c), 1);
    assert_false(peer_conn_is_inflight(s->c, 1));
}

static void keep_request(struct side *s, uint32_t index)
{
    s->pend[s->npend++] = index;
}

static void cancel_seen(struct side *s, uint32_t index)
{
    assert_int_equal(index, 1);
    /* The cancelled request can no longer be answered; the other can. */
    assert_int_equal(peer_conn_send_piece(s->c, 1, s->t->fd, PLEN, PLEN), SHOAL_ECANCELED);
    answer(s, 0);
}

static void close_on_piece(struct side *s, uint32_t index)
{
    (void)index;
    peer_conn_close(s->c, 0);
}

static void test_cancel(void **state)
{
    struct tctx *t = *state;

    t->cli.h.ready = cancel_ready;
    t->cli.h.piece = close_on_piece;
    t->srv.h.request = keep_request;
    t->srv.h.cancel = cancel_seen;
    start_pair(t);
    run(t);
    assert_int_equal(t->srv.requests, 2);
    assert_int_equal(t->srv.cancels, 1);
    assert_int_equal(t->srv.cancel_last, 1);
    assert_int_equal(t->cli.pieces, 1);
    assert_int_equal(t->cli.got, 1u);
    assert_int_equal(t->cli.reason, 0);
}

/* The peer answers at once, so our CANCEL for piece 1 crosses its PIECE (or
 * drops its queued answer): either way piece 1 is never delivered and the
 * connection stays up. */
static void race_ready(struct side *s)
{
    assert_int_equal(peer_conn_request(s->c, 0), 0);
    assert_int_equal(peer_conn_request(s->c, 1), 0);
}

static void race_piece(struct side *s, uint32_t index)
{
    if (index == 0) {
        assert_int_equal(peer_conn_cancel(s->c, 1), 0);
        assert_int_equal(peer_conn_request(s->c, 2), 0);
    } else {
        assert_int_equal(index, 2);
        peer_conn_close(s->c, 0);
    }
}

static void test_cancel_race(void **state)
{
    struct tctx *t = *state;

    t->cli.h.ready = race_ready;
    t->cli.h.piece = race_piece;
    t->srv.h.request = answer_now;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.pieces, 2);
    assert_int_equal(t->cli.got, (1u << 0) | (1u << 2));
    assert_int_equal(t->cli.reason, 0);
    assert_int_equal(t->srv.reason, 0);
}

static void request_2(struct side *s)
{
    assert_int_equal(peer_conn_request(s->c, 2), 0);
}

static void timeout_seen(struct side *s, uint32_t index)
{
    assert_int_equal(index, 2);
    assert_int_equal(peer_conn_inflight(s->c), 0);
}

static void close_on_cancel(struct side *s, uint32_t index)
{
    (void)index;
    peer_conn_close(s->c, 0);
}

static void test_request_timeout(void **state)
{
    struct tctx *t = *state;

    t->ccfg.request_timeout_ms = 100;
    t->cli.h.ready = request_2;
    t->cli.h.timeout = timeout_seen;
    t->srv.h.request = ignore_request;
    t->srv.h.cancel = close_on_cancel; /* the timeout sent CANCEL */
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.timeouts, 1);
    assert_int_equal(t->cli.timeout_last, 2);
    assert_int_equal(t->srv.cancels, 1);
    assert_int_equal(t->srv.cancel_last, 2);
    assert_int_equal(t->cli.reason, 0);
    assert_int_equal(t->cli.pieces, 0);
}

static void on_aux(uv_timer_t *tm)
{
    struct tctx *t = tm->data;

    uv_close((uv_handle_t *)tm, NULL);
    if (t->cli.c)
        peer_conn_close(t->cli.c, 0);
}

static void keepalive_ready(struct side *s)
{
    struct tctx *t = s->t;

    /* Three idle periods with no traffic but KEEPALIVEs. */
    assert_int_equal(uv_timer_init(&t->loop, &t->aux), 0);
    t->aux.data = t;
    assert_int_equal(uv_timer_start(&t->aux, on_aux, 3 * 240, 0), 0);
}

static void test_keepalive_keeps_open(void **state)
{
    struct tctx *t = *state;

    t->ccfg.idle_timeout_ms = t->scfg.idle_timeout_ms = 240;
    t->cli.h.ready = keepalive_ready;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.reason, 0);
    assert_int_equal(t->srv.reason, 0);
}

/* After the last piece it asked for, a connection that stays open holds no
 * piece-sized receive buffer: an agent keeps the connections of every swarm
 * it seeds (thirty for an image), and each would pin a piece's worth. */
static size_t idle_cap = SIZE_MAX;

static void on_idle_check(uv_timer_t *tm)
{
    struct tctx *t = tm->data;

    uv_close((uv_handle_t *)tm, NULL);
    idle_cap = t->cli.c->dec.buf ? t->cli.c->dec.cap : 0;
    peer_conn_close(t->cli.c, 0);
}

static void two_ready(struct side *s)
{
    assert_int_equal(peer_conn_request(s->c, 0), 0);
    assert_int_equal(peer_conn_request(s->c, 1), 0);
}

static void two_piece(struct side *s, uint32_t index)
{
    struct tctx *t = s->t;

    (void)index;
    /* While one is still coming, the buffer is kept for it. */
    if (s->pieces == 1)
        assert_true(s->c->dec.keep >= PLEN);
    if (s->pieces < 2)
        return;
    assert_int_equal(uv_timer_init(&t->loop, &t->aux), 0);
    t->aux.data = t;
    assert_int_equal(uv_timer_start(&t->aux, on_idle_check, 20, 0), 0);
}

static void test_idle_frees_piece_buffer(void **state)
{
    struct tctx *t = *state;

    idle_cap = SIZE_MAX;
    t->cli.h.ready = two_ready;
    t->cli.h.piece = two_piece;
    t->srv.h.request = answer;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.pieces, 2);
    assert_int_equal(t->cli.piece_bad, 0);
    assert_int_equal(idle_cap, 0);
    assert_int_equal(t->cli.reason, 0);
}

/* The evil peer speaks plaintext only: not in the TLS build. */
#ifndef PEER_CONN_TEST_TLS
static void test_idle_timeout(void **state)
{
    struct tctx *t = *state;

    t->want_cli = false;
    t->scfg.idle_timeout_ms = 100;
    start_listener(t);
    evil_start(t); /* handshakes, then stays silent */
    run(t);
    assert_int_equal(t->srv.ready, 1);
    assert_int_equal(t->srv.reason, SHOAL_ETIMEOUT);
    /* It did send KEEPALIVEs while waiting (the evil peer counted frames:
     * HELLO, AUTH, then at least one more). */
    assert_true(t->evil.frames >= 3);
}
#endif

/* ---- Tests: closing from callbacks -------------------------------------------- */

static void close_shutting_down(struct side *s)
{
    peer_conn_close(s->c, SHOAL_ECANCELED);
    /* Everything after a close is refused; closing again is a no-op. */
    assert_int_equal(peer_conn_request(s->c, 0), -ENOTCONN);
    assert_int_equal(peer_conn_send_have(s->c, 0), -ENOTCONN);
    peer_conn_close(s->c, SHOAL_EPROTOCOL);
    assert_false(peer_conn_ready(s->c));
}

static void test_close_in_on_ready(void **state)
{
    struct tctx *t = *state;

    t->srv.h.ready = close_shutting_down;
    start_pair(t);
    run(t);
    assert_int_equal(t->srv.reason, SHOAL_ECANCELED);
    assert_int_equal(t->cli.ready, 1);
    assert_int_equal(t->cli.reason, SHOAL_EUNAVAILABLE);
}

static void bf_and_haves(struct side *s)
{
    uint8_t bits[1] = {0};

    assert_int_equal(peer_conn_send_bitfield(s->c, bits), 0);
    assert_int_equal(peer_conn_send_have(s->c, 1), 0);
    assert_int_equal(peer_conn_send_have(s->c, 2), 0);
}

static void close_in_bitfield(struct side *s)
{
    peer_conn_close(s->c, 0);
}

static void test_close_in_on_bitfield(void **state)
{
    struct tctx *t = *state;

    t->srv.h.ready = bf_and_haves;
    t->cli.h.bitfield = close_in_bitfield;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.bitfields, 1);
    assert_int_equal(t->cli.haves, 0); /* read in the same buffer, not delivered */
    assert_int_equal(t->cli.closes, 1);
    assert_int_equal(t->cli.reason, 0);
    assert_int_equal(t->srv.closes, 1);
}

static void test_close_in_on_piece_with_more_in_flight(void **state)
{
    struct tctx *t = *state;

    t->cli.h.ready = xfer_ready;
    t->cli.h.piece = close_on_piece;
    t->srv.h.request = answer_now;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.pieces, 1);
    assert_int_equal(t->cli.reason, 0);
    assert_int_equal(t->srv.closes, 1);
}

static void answer_then_close(struct side *s, uint32_t index)
{
    answer(s, index);
    /* A piece read is now in the thread pool. */
    peer_conn_close(s->c, 0);
}

static void test_close_in_on_request_with_read_pending(void **state)
{
    struct tctx *t = *state;

    t->cli.h.ready = xfer_ready;
    t->srv.h.request = answer_then_close;
    start_pair(t);
    run(t);
    assert_int_equal(t->srv.requests, 1);
    assert_int_equal(t->srv.reason, 0);
    assert_int_equal(t->cli.closes, 1);
    assert_int_equal(t->cli.pieces, 0);
}

static void close_in_timeout(struct side *s, uint32_t index)
{
    (void)index;
    peer_conn_close(s->c, SHOAL_ETIMEOUT);
}

static void test_close_in_on_request_timeout(void **state)
{
    struct tctx *t = *state;

    t->ccfg.request_timeout_ms = 50;
    t->cli.h.ready = xfer_ready; /* four requests, all time out together */
    t->cli.h.timeout = close_in_timeout;
    t->srv.h.request = ignore_request;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.timeouts, 1);
    assert_int_equal(t->cli.reason, SHOAL_ETIMEOUT);
}

/* The owner's file lost the piece's bytes between the answer and its send
 * (a whole-blob mismatch drops a partial's content): the serving side closes
 * the connection with -EIO instead of sending what is not there, mapped or
 * read alike. */
static void truncate_then_answer(struct side *s, uint32_t index)
{
    assert_int_equal(ftruncate(s->t->fd, PLEN), 0);
    answer(s, index);
}

static void ask_last(struct side *s)
{
    assert_int_equal(peer_conn_request(s->c, NPIECES - 1), 0);
}

static void test_answer_past_the_end(void **state)
{
    struct tctx *t = *state;

    t->cli.h.ready = ask_last;
    t->cli.h.piece = xfer_piece;
    t->srv.h.request = truncate_then_answer;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.pieces, 0);
    assert_int_equal(t->srv.reason, -EIO);
    assert_int_equal(t->cli.closes, 1); /* the requester hears the close, not a piece */
}

#ifndef PEER_CONN_TEST_TLS
/* Every answer is followed at once by a HAVE. On a plaintext connection a
 * piece's data goes from the file with sendfile after its header, and frames
 * sent meanwhile are held until it has left: the first HAVE (sent while
 * piece 0 was going out) arrives after piece 0, and no frame lands inside a
 * piece (every piece arrives intact, nobody closes with an error). */
static void answer_then_have(struct side *s, uint32_t index)
{
    answer(s, index);
    assert_int_equal(peer_conn_send_have(s->c, index), 0);
}

static void have_after_piece(struct side *s, uint32_t index)
{
    (void)index;
    assert_true(s->got & 1u);
    if (s->haves == (int)NPIECES)
        peer_conn_close(s->c, 0);
}

static void xfer_piece_keep_open(struct side *s, uint32_t index)
{
    (void)index;
    if (s->next_req < NPIECES)
        assert_int_equal(peer_conn_request(s->c, s->next_req++), 0);
}

static void test_frames_held_behind_a_piece(void **state)
{
    struct tctx *t = *state;

    t->cli.h.ready = xfer_ready;
    t->cli.h.piece = xfer_piece_keep_open;
    t->cli.h.have = have_after_piece;
    t->srv.h.request = answer_then_have;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.pieces, NPIECES);
    assert_int_equal(t->cli.piece_bad, 0);
    assert_int_equal(t->cli.haves, NPIECES);
    assert_int_equal(t->cli.reason, 0);
    assert_int_equal(t->srv.reason, 0);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_bitfield_have),
        T(test_transfer_pipelined),
        T(test_answers_out_of_order),
        T(test_max_inflight_config),
        T(test_cancel),
        T(test_cancel_race),
        T(test_request_timeout),
        T(test_keepalive_keeps_open),
        T(test_idle_frees_piece_buffer),
#ifndef PEER_CONN_TEST_TLS
        T(test_idle_timeout),
#endif
        T(test_close_in_on_ready),
        T(test_close_in_on_bitfield),
        T(test_close_in_on_piece_with_more_in_flight),
        T(test_close_in_on_request_with_read_pending),
        T(test_close_in_on_request_timeout),
        T(test_answer_past_the_end),
#ifndef PEER_CONN_TEST_TLS
        T(test_frames_held_behind_a_piece),
#endif
#undef T
    };

    /* As in the agent: a peer may vanish under a write (the TLS close_notify
     * goes out as the other side closes too). */
    signal(SIGPIPE, SIG_IGN);
    /* Quiet by default; SHOAL_TEST_DEBUG=1 shows every state transition. */
    log_threshold = getenv("SHOAL_TEST_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
