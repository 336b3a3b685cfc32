/* The tracker announce (docs/protocol.md, "POST /v1/announce"): the one place
 * its JSON keys, limits and event names are written, with the encoder and
 * the decoder of both the request an agent sends and the reply the tracker
 * sends back. The tracker decodes requests and encodes replies; the agent's
 * tracker client does the opposite.
 *
 * Pure module: no I/O, no uv types. Decoders check every field (type,
 * bounds, hex, index ranges) and name the field at fault in err. Encoders
 * refuse what a decoder would refuse to read back where it is cheap to tell
 * (missing strings, invalid UTF-8, hashes of an impossible length).
 */
#ifndef SHOAL_ANNOUNCE_H
#define SHOAL_ANNOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal/buf.h"
#include "shoal/wire.h"

#define ANNOUNCE_PATH "/v1/announce"

#define ANNOUNCE_SIZE_MAX (1ULL << 40) /* 1 TiB: the largest blob a swarm is made for */
#define ANNOUNCE_AGENT_MAX 128         /* agent id length */
#define ANNOUNCE_ADDR_MAX 300          /* "HOST:PORT" length */
#define ANNOUNCE_BAD_PEERS_MAX 64      /* bad_peers entries in one request */
#define ANNOUNCE_PEERS_MAX 200         /* peers in one reply */
#define ANNOUNCE_LEASE_MAX 1024        /* pieces in one lease */
#define ANNOUNCE_INTERVAL_MIN_MS 100   /* interval_ms bounds an agent accepts */
#define ANNOUNCE_INTERVAL_MAX_MS 3600000
#define ANNOUNCE_ERROR_MAX 256                /* room for any decoder message */
#define ANNOUNCE_HASHES_PER_REPLY 4096        /* hashes in one reply to an agent that keeps them */
#define ANNOUNCE_TABLE_MAX ((1ULL << 53) - 1) /* table ids: exact in any JSON reader */

/* XX(name, text). PROGRESS comes first: it is what a request without an
 * "event" means. */
#define ANNOUNCE_EVENT_MAP(XX)                                                                     \
    XX(PROGRESS, "progress")                                                                       \
    XX(STARTED, "started")                                                                         \
    XX(COMPLETED, "completed")                                                                     \
    XX(STOPPED, "stopped")

enum announce_event {
#define XX(name, text) ANNOUNCE_EVENT_##name,
    ANNOUNCE_EVENT_MAP(XX)
#undef XX
};

/* "stopped", ... or "unknown". Never NULL; the string is static. */
const char *announce_event_name(enum announce_event ev);
/* Parses an event name (exact, lower case). 0 or SHOAL_EPARSE. */
int announce_event_parse(const char *s, enum announce_event *out);

/* ---- Request ------------------------------------------------------------ */

/* One piece hash: index and raw bytes (the request's hash_len of them). */
struct announce_hash {
    uint32_t index;
    uint8_t hash[WIRE_HASH_MAX];
};

/* An announce. Strings and arrays are borrowed; strings are NUL-terminated.
 * Value checks that need the swarm (digest grammar, size, agent characters,
 * reachable addr, piece ranges) are the tracker core's. */
struct announce_req {
    const char *digest; /* "sha256:<hex>" */
    uint64_t size;
    const char *agent;
    const char *addr; /* "HOST:PORT" peers connect to */
    enum announce_event event;
    uint64_t have; /* verified pieces */
    bool complete;
    bool want_lease;
    const struct announce_hash *hashes; /* pieces fetched under a lease */
    size_t nhashes;
    size_t hash_len; /* raw length of every hash: wire_hash_len of the swarm's algorithm */
    const uint64_t *lease_failed;
    size_t nlease_failed;
    const char *const *bad_peers; /* addresses of peers that sent a bad piece */
    size_t nbad_peers;
    /* The agent keeps the hashes it was sent: it wants only those the
     * swarm's hash log holds past hashes_from in table (the reply's table
     * and hashes_seq it took last; 0 and 0 at first). Without it (an older
     * agent) every reply carries every known hash. */
    bool has_hashes_from;
    uint64_t hashes_from;
    uint64_t table;
    /* With has_hashes_from: the agent also keeps the confirmed flags it was
     * sent, and knows confirmed_seen of them in table; the reply carries
     * "confirmed" only when the swarm has more (or its table is another).
     * Without it every reply carries the flags whenever any is set. */
    bool has_confirmed_seen;
    uint64_t confirmed_seen;
};

/* Appends the request body (compact JSON). "bad_peers" is left out when
 * empty. 0, -EINVAL (a NULL or non-UTF-8 string, hash_len 0 or above
 * WIRE_HASH_MAX with hashes), -ENOMEM or buf_append's SHOAL_ETOOBIG. */
int announce_req_encode(const struct announce_req *r, struct buf *out);

/* A decoded request and what it points into (owned). */
struct announce_req_doc {
    struct announce_req req;
    struct json_t *json; /* the parsed body; req's strings point into it */
    char *text;          /* or: a copy of the body they point into (the fast path) */
    struct announce_hash *hashes;
    uint64_t *lease_failed;
    const char *bad_peers[ANNOUNCE_BAD_PEERS_MAX];
};

/* Decodes a request body whose hashes must be of algo. Absent optional
 * fields take their defaults (event progress, have 0, booleans false, lists
 * empty); unknown keys are ignored, duplicate keys refused. Returns 0;
 * SHOAL_EPARSE with err "<field>: <problem>" (e.g. `hashes["3"]: expected 32
 * lower-case hex characters (xxh3-128)`, "body: invalid JSON: ..."); or
 * -ENOMEM. Call announce_req_doc_dispose afterwards in every case. */
int announce_req_decode(const char *body, size_t len, enum wire_hash_algo algo,
                        struct announce_req_doc *out, char *err, size_t errlen);
void announce_req_doc_dispose(struct announce_req_doc *d);

/* ---- Reply -------------------------------------------------------------- */

struct announce_peer {
    const char *agent; /* at most ANNOUNCE_AGENT_MAX */
    const char *addr;  /* at most ANNOUNCE_ADDR_MAX */
    bool complete;
    uint32_t have;
};

/* The tracker's answer. Pointers are borrowed.
 *
 * Hashes go out in one of two forms. To an agent that asked with
 * hashes_from, the reply carries has_seq: the swarm's table id, the number
 * of hashes known (nhashed), and the hashes the swarm's log holds from the
 * agent's hashes_from (or from 0, when its table is another) up to
 * hashes_seq, at most ANNOUNCE_HASHES_PER_REPLY of them. Otherwise the
 * reply carries every known hash. The encoder sends hash_list when it is
 * set, else every hash flagged in hashed; the decoder always fills hashes
 * and hashed with what the reply carried. */
struct announce_reply {
    uint64_t interval_ms;
    uint64_t piece_length;
    uint32_t pieces;
    enum wire_hash_algo hash_algo;
    size_t hash_len;       /* wire_hash_len(hash_algo) */
    const uint8_t *hashes; /* pieces * hash_len bytes; NULL when none is known */
    const uint8_t *hashed; /* pieces flags: hashes[i] is known; NULL when none */
    /* pieces flags: hashes[i] was vouched for by an agent other than the one
     * that reported it (an agent that completed the blob with it); NULL when
     * none. Only a confirmed hash may make a piece's bytes final for a
     * client (docs/protocol.md, "Confirmed hashes"). With has_seq it may
     * name pieces whose hash an earlier reply carried. */
    const uint8_t *confirmed;
    bool has_seq;
    uint64_t table;      /* 1 to ANNOUNCE_TABLE_MAX; 0 when the tracker has no swarm */
    uint32_t hashes_seq; /* the log position after this reply's hashes */
    uint32_t nhashed;    /* hashes the swarm knows: hashes_seq <= nhashed <= pieces */
    const struct announce_hash *hash_list; /* encoder: the hashes to send, when set */
    size_t nhash_list;
    const struct announce_peer *peers;
    size_t npeers;
    bool has_lease;
    const uint32_t *lease; /* ascending piece indexes */
    size_t nlease;
    uint64_t lease_expires_ms; /* relative to the reply */
};

/* Appends the reply body (compact JSON): "hashes" holds hash_list when set
 * (each index below pieces; else -EINVAL), every known hash otherwise;
 * "table", "hashes_seq" and "hashed" are there with has_seq; "peers" every peer, "lease" is present
 * only with has_lease. 0, -EINVAL (a NULL or non-UTF-8 peer string, an unknown algorithm), -ENOMEM
 * or buf_append's SHOAL_ETOOBIG. */
int announce_reply_encode(const struct announce_reply *r, struct buf *out);

/* A decoded reply and what it points into (owned). */
struct announce_reply_doc {
    struct announce_reply reply;
    struct json_t *json; /* the parsed body; the peers' strings point into it */
    uint8_t *hashes;     /* pieces * hash_len, zero where unknown */
    uint8_t *hashed;     /* pieces flags */
    uint8_t *confirmed;  /* pieces flags */
    struct announce_peer *peers;
    uint32_t *lease;
};

/* Decodes a reply body. Checked: interval_ms within
 * [ANNOUNCE_INTERVAL_MIN_MS, ANNOUNCE_INTERVAL_MAX_MS], piece_length in
 * [1, UINT32_MAX], pieces at most WIRE_PIECES_MAX, a known hash_algo, hashes
 * keyed by canonical piece indexes below pieces with lower-case hex of the
 * algorithm's length, at most ANNOUNCE_PEERS_MAX peers each with an agent
 * and an addr within their limits (have at most pieces), and a lease (null
 * or absent for none) of at most ANNOUNCE_LEASE_MAX strictly ascending
 * indexes below pieces with expires_ms up to UINT32_MAX; and, when any of
 * "table", "hashes_seq" and "hashed" is there, all three, with table at
 * most ANNOUNCE_TABLE_MAX and hashes_seq <= hashed <= pieces. Unknown keys are
 * ignored. Returns 0; SHOAL_EPARSE with err `tracker reply: "<field>":
 * <problem>` ("(body)" for the document itself); or -ENOMEM. On failure
 * *out holds nothing (it is disposed already); calling
 * announce_reply_doc_dispose afterwards is safe in every case. reply.hashes,
 * reply.hashed and reply.confirmed are never NULL after a success; a
 * "confirmed" bitfield (lower-case hex of wire_bitfield_bytes(pieces) bytes,
 * spare bits zero) may only name pieces with a hash in this reply, or, with
 * "table", at most "hashed" pieces. */
int announce_reply_decode(const char *body, size_t len, struct announce_reply_doc *out, char *err,
                          size_t errlen);
void announce_reply_doc_dispose(struct announce_reply_doc *d);

#endif
