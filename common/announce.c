/* The tracker announce JSON; see shoal/announce.h and docs/protocol.md. */
#include "shoal/announce.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "shoal/error.h"

/* The keys, written once. */
#define K_DIGEST "digest"
#define K_SIZE "size"
#define K_AGENT "agent"
#define K_ADDR "addr"
#define K_EVENT "event"
#define K_HAVE "have"
#define K_COMPLETE "complete"
#define K_WANT_LEASE "want_lease"
#define K_HASHES "hashes"
#define K_CONFIRMED "confirmed"
#define K_LEASE_FAILED "lease_failed"
#define K_BAD_PEERS "bad_peers"
#define K_INTERVAL_MS "interval_ms"
#define K_PIECE_LENGTH "piece_length"
#define K_PIECES "pieces"
#define K_HASH_ALGO "hash_algo"
#define K_PEERS "peers"
#define K_LEASE "lease"
#define K_EXPIRES_MS "expires_ms"
#define K_HASHES_FROM "hashes_from"
#define K_TABLE "table"
#define K_HASHES_SEQ "hashes_seq"
#define K_HASHED "hashed"

static const char *const event_names[] = {
#define XX(name, text) text,
    ANNOUNCE_EVENT_MAP(XX)
#undef XX
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

const char *announce_event_name(enum announce_event ev)
{
    return (size_t)ev < NELEM(event_names) ? event_names[ev] : "unknown";
}

int announce_event_parse(const char *s, enum announce_event *out)
{
    for (size_t i = 0; s != NULL && i < NELEM(event_names); i++) {
        if (strcmp(s, event_names[i]) == 0) {
            *out = (enum announce_event)i;
            return 0;
        }
    }
    return SHOAL_EPARSE;
}

/* ---- Shared helpers ------------------------------------------------------ */

/* Sets key to v (taken). Fails when v is NULL (json_string refuses NULL
 * and invalid UTF-8) or the set fails. */
static int put(json_t *o, const char *key, json_t *v)
{
    if (v == NULL)
        return -EINVAL;
    return json_object_set_new(o, key, v) == 0 ? 0 : -ENOMEM;
}

static int append(json_t *a, json_t *v)
{
    if (v == NULL)
        return -EINVAL;
    return json_array_append_new(a, v) == 0 ? 0 : -ENOMEM;
}

/* Dumps o (borrowed) compactly, in insertion order, onto out. */
static int dump(json_t *o, struct buf *out)
{
    char *s = json_dumps(o, JSON_COMPACT);
    int rc;

    if (s == NULL)
        return -ENOMEM;
    rc = buf_append(out, s, strlen(s));
    free(s);
    return rc;
}

/* A piece index as a JSON object key: decimal, no sign, no leading zero. */
static int parse_index(const char *s, uint32_t *out)
{
    uint64_t v = 0;
    size_t n = strlen(s);

    if (n == 0 || n > 10 || (n > 1 && s[0] == '0'))
        return SHOAL_EPARSE;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return SHOAL_EPARSE;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > UINT32_MAX)
        return SHOAL_EPARSE;
    *out = (uint32_t)v;
    return 0;
}

/* A JSON string usable as a C string: no embedded NUL. */
static const char *c_string(json_t *v)
{
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
        return NULL;
    return json_string_value(v);
}

static json_t *load(const char *body, size_t len, json_error_t *jerr)
{
    return json_loadb(body != NULL ? body : "", body != NULL ? len : 0, JSON_REJECT_DUPLICATES,
                      jerr);
}

/* ---- Request encoder ----------------------------------------------------- */

int announce_req_encode(const struct announce_req *r, struct buf *out)
{
    json_t *o = json_object();
    json_t *hashes = json_object();
    json_t *failed = json_array();
    json_t *bad = NULL;
    char hex[WIRE_HASH_HEX_MAX];
    char key[16];
    int rc = -ENOMEM;

    if (o == NULL || hashes == NULL || failed == NULL)
        goto out;
    if (r->digest == NULL || r->agent == NULL || r->addr == NULL ||
        (size_t)r->event >= NELEM(event_names) ||
        (r->has_hashes_from &&
         (r->hashes_from > WIRE_PIECES_MAX || r->table > ANNOUNCE_TABLE_MAX)) ||
        (r->nhashes > 0 && (r->hash_len == 0 || r->hash_len > WIRE_HASH_MAX))) {
        rc = -EINVAL;
        goto out;
    }
    for (size_t i = 0; i < r->nhashes; i++) {
        wire_hash_to_hex(r->hashes[i].hash, r->hash_len, hex);
        snprintf(key, sizeof(key), "%" PRIu32, r->hashes[i].index);
        if ((rc = put(hashes, key, json_string(hex))) < 0)
            goto out;
    }
    for (size_t i = 0; i < r->nlease_failed; i++) {
        if ((rc = append(failed, json_integer((json_int_t)r->lease_failed[i]))) < 0)
            goto out;
    }
    if ((rc = put(o, K_DIGEST, json_string(r->digest))) < 0 ||
        (rc = put(o, K_SIZE, json_integer((json_int_t)r->size))) < 0 ||
        (rc = put(o, K_AGENT, json_string(r->agent))) < 0 ||
        (rc = put(o, K_ADDR, json_string(r->addr))) < 0 ||
        (rc = put(o, K_EVENT, json_string(announce_event_name(r->event)))) < 0 ||
        (rc = put(o, K_HAVE, json_integer((json_int_t)r->have))) < 0 ||
        (rc = put(o, K_COMPLETE, json_boolean(r->complete))) < 0 ||
        (rc = put(o, K_WANT_LEASE, json_boolean(r->want_lease))) < 0)
        goto out;
    if (r->has_hashes_from &&
        ((rc = put(o, K_HASHES_FROM, json_integer((json_int_t)r->hashes_from))) < 0 ||
         (rc = put(o, K_TABLE, json_integer((json_int_t)r->table))) < 0))
        goto out;
    rc = put(o, K_HASHES, hashes);
    hashes = NULL;
    if (rc < 0)
        goto out;
    rc = put(o, K_LEASE_FAILED, failed);
    failed = NULL;
    if (rc < 0)
        goto out;
    if (r->nbad_peers > 0) {
        bad = json_array();
        if (bad == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < r->nbad_peers; i++) {
            if ((rc = append(bad, json_string(r->bad_peers[i]))) < 0)
                goto out;
        }
        rc = put(o, K_BAD_PEERS, bad);
        bad = NULL;
        if (rc < 0)
            goto out;
    }
    rc = dump(o, out);
out:
    json_decref(o);
    json_decref(hashes);
    json_decref(failed);
    json_decref(bad);
    return rc;
}

/* ---- Request decoder ----------------------------------------------------- */

/* Messages follow the tracker's 400 answers (docs/protocol.md): the field
 * first, then the problem. */
#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        return SHOAL_EPARSE;                                                                       \
    } while (0)

static int get_string(json_t *doc, const char *key, bool required, const char **out, char *err,
                      size_t errlen)
{
    json_t *v = json_object_get(doc, key);

    if (v == NULL) {
        if (required)
            BAD("%s: missing", key);
        return 0;
    }
    if (!json_is_string(v))
        BAD("%s: expected a string", key);
    /* Strings go on as C strings: an embedded NUL would cut them short. */
    if (c_string(v) == NULL)
        BAD("%s: contains a NUL character", key);
    *out = json_string_value(v);
    return 0;
}

static int get_uint(json_t *doc, const char *key, bool required, uint64_t *out, char *err,
                    size_t errlen)
{
    json_t *v = json_object_get(doc, key);

    if (v == NULL) {
        if (required)
            BAD("%s: missing", key);
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        BAD("%s: expected a non-negative integer", key);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_bool(json_t *doc, const char *key, bool *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(doc, key);

    if (v == NULL)
        return 0;
    if (!json_is_boolean(v))
        BAD("%s: expected true or false", key);
    *out = json_is_true(v);
    return 0;
}

static int get_hashes(json_t *doc, enum wire_hash_algo algo, struct announce_req_doc *d, char *err,
                      size_t errlen)
{
    json_t *obj = json_object_get(doc, K_HASHES);
    size_t hash_len = wire_hash_len(algo);
    const char *key;
    json_t *v;
    size_t n = 0;

    if (obj == NULL)
        return 0;
    if (!json_is_object(obj))
        BAD(K_HASHES ": expected an object of piece index -> hex hash");
    if (json_object_size(obj) > WIRE_PIECES_MAX)
        BAD(K_HASHES ": more than %u entries", WIRE_PIECES_MAX);
    if (json_object_size(obj) == 0)
        return 0;
    d->hashes = calloc(json_object_size(obj), sizeof(*d->hashes));
    if (d->hashes == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    json_object_foreach(obj, key, v)
    {
        struct announce_hash *h = &d->hashes[n];
        const char *hex = c_string(v);

        /* Object keys may hold a NUL too; strlen stops there and the key
         * then fails the index grammar or is echoed cut short. */
        if (parse_index(key, &h->index) < 0)
            BAD(K_HASHES ": key \"%.20s\" is not a piece index", key);
        if (hex == NULL || wire_hash_from_hex(algo, hex, strlen(hex), h->hash) < 0)
            BAD(K_HASHES "[\"%s\"]: expected %zu lower-case hex characters (%s)", key, 2 * hash_len,
                wire_hash_algo_name(algo));
        n++;
    }
    d->req.hashes = d->hashes;
    d->req.nhashes = n;
    return 0;
}

static int get_failed(json_t *doc, struct announce_req_doc *d, char *err, size_t errlen)
{
    json_t *arr = json_object_get(doc, K_LEASE_FAILED);
    size_t i;
    json_t *v;

    if (arr == NULL)
        return 0;
    if (!json_is_array(arr))
        BAD(K_LEASE_FAILED ": expected an array of piece indexes");
    if (json_array_size(arr) > WIRE_PIECES_MAX)
        BAD(K_LEASE_FAILED ": more than %u entries", WIRE_PIECES_MAX);
    if (json_array_size(arr) == 0)
        return 0;
    d->lease_failed = calloc(json_array_size(arr), sizeof(*d->lease_failed));
    if (d->lease_failed == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    json_array_foreach(arr, i, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            BAD(K_LEASE_FAILED "[%zu]: expected a non-negative integer", i);
        d->lease_failed[i] = (uint64_t)json_integer_value(v);
    }
    d->req.lease_failed = d->lease_failed;
    d->req.nlease_failed = json_array_size(arr);
    return 0;
}

/* Only the shape and the count; the tracker core checks the addresses. */
static int get_bad_peers(json_t *doc, struct announce_req_doc *d, char *err, size_t errlen)
{
    json_t *arr = json_object_get(doc, K_BAD_PEERS);
    size_t i;
    json_t *v;

    if (arr == NULL)
        return 0;
    if (!json_is_array(arr))
        BAD(K_BAD_PEERS ": expected an array of \"HOST:PORT\" strings");
    if (json_array_size(arr) > ANNOUNCE_BAD_PEERS_MAX)
        BAD(K_BAD_PEERS ": more than %d entries", ANNOUNCE_BAD_PEERS_MAX);
    json_array_foreach(arr, i, v)
    {
        if (c_string(v) == NULL)
            BAD(K_BAD_PEERS ": entry %zu is not a \"HOST:PORT\" string", i);
        d->bad_peers[i] = json_string_value(v);
    }
    d->req.bad_peers = d->bad_peers;
    d->req.nbad_peers = json_array_size(arr);
    return 0;
}

/* "hashes_from" and "table" come together: a position in one table's log. */
static int get_hashes_from(json_t *doc, struct announce_req *r, char *err, size_t errlen)
{
    bool from = json_object_get(doc, K_HASHES_FROM) != NULL;
    bool table = json_object_get(doc, K_TABLE) != NULL;
    int rc;

    if (!from && !table)
        return 0;
    if (!from || !table)
        BAD("%s: missing (" K_HASHES_FROM " and " K_TABLE " come together)",
            from ? K_TABLE : K_HASHES_FROM);
    if ((rc = get_uint(doc, K_HASHES_FROM, true, &r->hashes_from, err, errlen)) < 0 ||
        (rc = get_uint(doc, K_TABLE, true, &r->table, err, errlen)) < 0)
        return rc;
    if (r->hashes_from > WIRE_PIECES_MAX)
        BAD(K_HASHES_FROM ": more than %u", WIRE_PIECES_MAX);
    if (r->table > ANNOUNCE_TABLE_MAX)
        BAD(K_TABLE ": more than %llu", (unsigned long long)ANNOUNCE_TABLE_MAX);
    r->has_hashes_from = true;
    return 0;
}

static int decode_req(json_t *doc, enum wire_hash_algo algo, struct announce_req_doc *d, char *err,
                      size_t errlen)
{
    struct announce_req *r = &d->req;
    const char *event = NULL;
    int rc;

    if (!json_is_object(doc))
        BAD("body: expected a JSON object");
    if ((rc = get_string(doc, K_DIGEST, true, &r->digest, err, errlen)) < 0 ||
        (rc = get_uint(doc, K_SIZE, true, &r->size, err, errlen)) < 0 ||
        (rc = get_string(doc, K_AGENT, true, &r->agent, err, errlen)) < 0 ||
        (rc = get_string(doc, K_ADDR, true, &r->addr, err, errlen)) < 0 ||
        (rc = get_string(doc, K_EVENT, false, &event, err, errlen)) < 0 ||
        (rc = get_uint(doc, K_HAVE, false, &r->have, err, errlen)) < 0 ||
        (rc = get_bool(doc, K_COMPLETE, &r->complete, err, errlen)) < 0 ||
        (rc = get_bool(doc, K_WANT_LEASE, &r->want_lease, err, errlen)) < 0)
        return rc;
    if (event != NULL && announce_event_parse(event, &r->event) < 0)
        BAD(K_EVENT ": expected started, progress, completed or stopped");
    if ((rc = get_hashes_from(doc, r, err, errlen)) < 0)
        return rc;
    if ((rc = get_hashes(doc, algo, d, err, errlen)) < 0 ||
        (rc = get_failed(doc, d, err, errlen)) < 0)
        return rc;
    return get_bad_peers(doc, d, err, errlen);
}

int announce_req_decode(const char *body, size_t len, enum wire_hash_algo algo,
                        struct announce_req_doc *out, char *err, size_t errlen)
{
    json_error_t jerr;

    memset(out, 0, sizeof(*out));
    out->req.event = ANNOUNCE_EVENT_PROGRESS;
    out->req.hash_len = wire_hash_len(algo);
    if (out->req.hash_len == 0) {
        snprintf(err, errlen, "hash_algo: unknown algorithm");
        return -EINVAL;
    }
    if (body == NULL || len == 0)
        BAD("body: expected a JSON object");
    out->json = load(body, len, &jerr);
    if (out->json == NULL)
        BAD("body: invalid JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
    return decode_req(out->json, algo, out, err, errlen);
}

void announce_req_doc_dispose(struct announce_req_doc *d)
{
    json_decref(d->json);
    free(d->hashes);
    free(d->lease_failed);
    memset(d, 0, sizeof(*d));
}

#undef BAD

/* ---- Reply encoder ------------------------------------------------------- */

/* "confirmed": the pieces whose hash is confirmed, as a hex bitfield; left
 * out when none is. With has_seq the hashes themselves may have gone out
 * in earlier replies, so the flags are taken as they are. */
static int put_confirmed(json_t *o, const struct announce_reply *r)
{
    size_t n = wire_bitfield_bytes(r->pieces);
    uint8_t *bits = calloc(n + 1, 1);
    char *hex = malloc(2 * n + 1);
    bool any = false;
    int rc = -ENOMEM;

    if (bits == NULL || hex == NULL)
        goto out;
    for (uint32_t i = 0; i < r->pieces; i++) {
        if (r->confirmed[i] && (r->has_seq || (r->hashed != NULL && r->hashed[i]))) {
            wire_bit_set(bits, i);
            any = true;
        }
    }
    rc = 0;
    if (any) {
        wire_hash_to_hex(bits, n, hex);
        rc = put(o, K_CONFIRMED, json_string(hex));
    }
out:
    free(bits);
    free(hex);
    return rc;
}

int announce_reply_encode(const struct announce_reply *r, struct buf *out)
{
    json_t *o = json_object();
    json_t *hashes = json_object();
    json_t *peers = json_array();
    json_t *lease = NULL, *pieces = NULL;
    char hex[WIRE_HASH_HEX_MAX];
    char key[16];
    int rc = -ENOMEM;

    if (o == NULL || hashes == NULL || peers == NULL)
        goto out;
    if (r->hash_len != wire_hash_len(r->hash_algo) || r->hash_len == 0) {
        rc = -EINVAL;
        goto out;
    }
    if ((rc = put(o, K_INTERVAL_MS, json_integer((json_int_t)r->interval_ms))) < 0 ||
        (rc = put(o, K_PIECE_LENGTH, json_integer((json_int_t)r->piece_length))) < 0 ||
        (rc = put(o, K_PIECES, json_integer(r->pieces))) < 0 ||
        (rc = put(o, K_HASH_ALGO, json_string(wire_hash_algo_name(r->hash_algo)))) < 0)
        goto out;
    if (r->has_seq) {
        if (r->hashes_seq > r->nhashed || r->nhashed > r->pieces || r->table > ANNOUNCE_TABLE_MAX) {
            rc = -EINVAL;
            goto out;
        }
        if ((rc = put(o, K_TABLE, json_integer((json_int_t)r->table))) < 0 ||
            (rc = put(o, K_HASHES_SEQ, json_integer(r->hashes_seq))) < 0 ||
            (rc = put(o, K_HASHED, json_integer(r->nhashed))) < 0)
            goto out;
    }
    for (size_t i = 0; r->hash_list != NULL && i < r->nhash_list; i++) {
        const struct announce_hash *h = &r->hash_list[i];

        if (h->index >= r->pieces) {
            rc = -EINVAL;
            goto out;
        }
        wire_hash_to_hex(h->hash, r->hash_len, hex);
        snprintf(key, sizeof(key), "%" PRIu32, h->index);
        if ((rc = put(hashes, key, json_string(hex))) < 0)
            goto out;
    }
    for (uint32_t i = 0; !r->has_seq && r->hashes != NULL && r->hashed != NULL && i < r->pieces;
         i++) {
        if (!r->hashed[i])
            continue;
        wire_hash_to_hex(r->hashes + (size_t)i * r->hash_len, r->hash_len, hex);
        snprintf(key, sizeof(key), "%" PRIu32, i);
        if ((rc = put(hashes, key, json_string(hex))) < 0)
            goto out;
    }
    for (size_t i = 0; i < r->npeers; i++) {
        const struct announce_peer *p = &r->peers[i];
        json_t *e = json_object();

        if ((rc = append(peers, e)) < 0)
            goto out;
        if ((rc = put(e, K_AGENT, p->agent ? json_string(p->agent) : NULL)) < 0 ||
            (rc = put(e, K_ADDR, p->addr ? json_string(p->addr) : NULL)) < 0 ||
            (rc = put(e, K_COMPLETE, json_boolean(p->complete))) < 0 ||
            (rc = put(e, K_HAVE, json_integer(p->have))) < 0)
            goto out;
    }
    rc = put(o, K_HASHES, hashes);
    hashes = NULL;
    if (rc < 0)
        goto out;
    if (r->confirmed != NULL && (rc = put_confirmed(o, r)) < 0)
        goto out;
    rc = put(o, K_PEERS, peers);
    peers = NULL;
    if (rc < 0)
        goto out;
    if (r->has_lease) {
        lease = json_object();
        pieces = json_array();
        if (lease == NULL || pieces == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < r->nlease; i++) {
            if ((rc = append(pieces, json_integer(r->lease[i]))) < 0)
                goto out;
        }
        rc = put(lease, K_PIECES, pieces);
        pieces = NULL;
        if (rc < 0 ||
            (rc = put(lease, K_EXPIRES_MS, json_integer((json_int_t)r->lease_expires_ms))) < 0)
            goto out;
        rc = put(o, K_LEASE, lease);
        lease = NULL;
        if (rc < 0)
            goto out;
    }
    rc = dump(o, out);
out:
    json_decref(o);
    json_decref(hashes);
    json_decref(peers);
    json_decref(lease);
    json_decref(pieces);
    return rc;
}

/* ---- Reply decoder ------------------------------------------------------- */

/* Messages as the agent logs them: `tracker reply: "<field>": <problem>`. */
static int fail(char *err, size_t errlen, const char *field, const char *fmt, ...)
{
    char what[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "tracker reply: \"%s\": %s", field, what);
    return SHOAL_EPARSE;
}

static int nomem(char *err, size_t errlen)
{
    snprintf(err, errlen, "tracker reply: out of memory");
    return -ENOMEM;
}

/* A required unsigned integer field in [min, max]. */
static int reply_uint(json_t *o, const char *field, const char *name, uint64_t min, uint64_t max,
                      uint64_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, field);
    json_int_t n;

    if (!json_is_integer(v))
        return fail(err, errlen, name, "missing or not an integer");
    n = json_integer_value(v);
    if (n < 0 || (uint64_t)n < min || (uint64_t)n > max)
        return fail(err, errlen, name, "out of range (%" PRIu64 " to %" PRIu64 ")", min, max);
    *out = (uint64_t)n;
    return 0;
}

static int reply_hashes(json_t *obj, struct announce_reply_doc *d, char *err, size_t errlen)
{
    struct announce_reply *r = &d->reply;
    const char *key;
    json_t *v;

    d->hashes = calloc(r->pieces ? r->pieces : 1, r->hash_len);
    d->hashed = calloc(r->pieces ? r->pieces : 1, 1);
    if (d->hashes == NULL || d->hashed == NULL)
        return nomem(err, errlen);
    r->hashes = d->hashes;
    r->hashed = d->hashed;
    if (obj == NULL)
        return 0;
    if (!json_is_object(obj))
        return fail(err, errlen, K_HASHES, "not an object");
    json_object_foreach(obj, key, v)
    {
        const char *hex = c_string(v);
        uint32_t idx;

        if (parse_index(key, &idx) < 0 || idx >= r->pieces)
            return fail(err, errlen, K_HASHES, "key \"%.20s\": index out of range", key);
        if (hex == NULL || wire_hash_from_hex(r->hash_algo, hex, strlen(hex),
                                              d->hashes + (size_t)idx * r->hash_len) < 0)
            return fail(err, errlen, K_HASHES, "value of \"%s\" is not a lower-case hex hash", key);
        d->hashed[idx] = 1;
    }
    return 0;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int reply_confirmed(json_t *v, struct announce_reply_doc *d, char *err, size_t errlen)
{
    struct announce_reply *r = &d->reply;
    size_t n = wire_bitfield_bytes(r->pieces);
    const char *hex;
    uint32_t count = 0;

    d->confirmed = calloc(r->pieces ? r->pieces : 1, 1);
    if (d->confirmed == NULL)
        return nomem(err, errlen);
    r->confirmed = d->confirmed;
    if (v == NULL)
        return 0;
    hex = c_string(v);
    if (hex == NULL || strlen(hex) != 2 * n)
        return fail(err, errlen, K_CONFIRMED, "expected %zu lower-case hex characters", 2 * n);
    for (size_t b = 0; b < n; b++) {
        int hi = hexval(hex[2 * b]), lo = hexval(hex[2 * b + 1]);
        if (hi < 0 || lo < 0)
            return fail(err, errlen, K_CONFIRMED, "not lower-case hex");
        uint8_t byte = (uint8_t)(hi << 4 | lo);
        for (unsigned k = 0; k < 8; k++) {
            uint32_t i = (uint32_t)(b * 8 + k);
            if (!(byte & (0x80u >> k)))
                continue;
            if (i >= r->pieces)
                return fail(err, errlen, K_CONFIRMED, "spare bits set");
            /* A reply in the hash log's form names hashes sent before;
             * it cannot name more than the swarm knows. */
            if (!d->hashed[i] && !r->has_seq)
                return fail(err, errlen, K_CONFIRMED, "piece %" PRIu32 " has no hash", i);
            if (r->has_seq && ++count > r->nhashed)
                return fail(err, errlen, K_CONFIRMED, "more pieces than \"hashed\" says");
            d->confirmed[i] = 1;
        }
    }
    return 0;
}

/* "table", "hashes_seq" and "hashed": all three or none (an older tracker
 * sends every hash in every reply). */
static int reply_seq(json_t *o, struct announce_reply_doc *d, char *err, size_t errlen)
{
    struct announce_reply *r = &d->reply;
    uint64_t seq, n;
    int rc;

    if (!json_object_get(o, K_TABLE) && !json_object_get(o, K_HASHES_SEQ) &&
        !json_object_get(o, K_HASHED))
        return 0;
    if ((rc = reply_uint(o, K_TABLE, K_TABLE, 0, ANNOUNCE_TABLE_MAX, &r->table, err, errlen)) < 0 ||
        (rc = reply_uint(o, K_HASHED, K_HASHED, 0, r->pieces, &n, err, errlen)) < 0 ||
        (rc = reply_uint(o, K_HASHES_SEQ, K_HASHES_SEQ, 0, n, &seq, err, errlen)) < 0)
        return rc;
    r->has_seq = true;
    r->nhashed = (uint32_t)n;
    r->hashes_seq = (uint32_t)seq;
    return 0;
}

/* A peer's string field: present, no NUL, 1 to max bytes. */
static const char *peer_string(json_t *p, const char *key, size_t max)
{
    const char *s = c_string(json_object_get(p, key));

    return s != NULL && s[0] != '\0' && strlen(s) <= max ? s : NULL;
}

static int reply_peers(json_t *arr, struct announce_reply_doc *d, char *err, size_t errlen)
{
    struct announce_reply *r = &d->reply;
    size_t i;
    json_t *p;

    if (arr == NULL)
        return 0;
    if (!json_is_array(arr) || json_array_size(arr) > ANNOUNCE_PEERS_MAX)
        return fail(err, errlen, K_PEERS, "not an array of at most %d peers", ANNOUNCE_PEERS_MAX);
    d->peers = calloc(json_array_size(arr) + 1, sizeof(*d->peers));
    if (d->peers == NULL)
        return nomem(err, errlen);
    r->peers = d->peers;
    json_array_foreach(arr, i, p)
    {
        struct announce_peer *tp = &d->peers[r->npeers];
        json_t *have, *complete;

        if (!json_is_object(p))
            return fail(err, errlen, K_PEERS, "entry %zu is not an object", i);
        have = json_object_get(p, K_HAVE);
        complete = json_object_get(p, K_COMPLETE);
        tp->agent = peer_string(p, K_AGENT, ANNOUNCE_AGENT_MAX);
        tp->addr = peer_string(p, K_ADDR, ANNOUNCE_ADDR_MAX);
        if (tp->agent == NULL || tp->addr == NULL)
            return fail(err, errlen, K_PEERS,
                        "entry %zu without a valid agent (1 to %d bytes) or addr (1 to %d)", i,
                        ANNOUNCE_AGENT_MAX, ANNOUNCE_ADDR_MAX);
        if (have != NULL && (!json_is_integer(have) || json_integer_value(have) < 0 ||
                             (uint64_t)json_integer_value(have) > r->pieces))
            return fail(err, errlen, K_PEERS, "entry %zu: have is not an integer from 0 to %u", i,
                        r->pieces);
        if (complete != NULL && !json_is_boolean(complete))
            return fail(err, errlen, K_PEERS, "entry %zu: complete is not true or false", i);
        tp->have = have != NULL ? (uint32_t)json_integer_value(have) : 0;
        tp->complete = json_is_true(complete);
        r->npeers++;
    }
    return 0;
}

static int reply_lease(json_t *lease, struct announce_reply_doc *d, char *err, size_t errlen)
{
    struct announce_reply *r = &d->reply;
    json_t *pieces;
    uint64_t exp;
    size_t i;
    json_t *v;
    int rc;

    if (lease == NULL || json_is_null(lease))
        return 0;
    if (!json_is_object(lease))
        return fail(err, errlen, K_LEASE, "not an object");
    pieces = json_object_get(lease, K_PIECES);
    if (!json_is_array(pieces) || json_array_size(pieces) > r->pieces ||
        json_array_size(pieces) > ANNOUNCE_LEASE_MAX)
        return fail(err, errlen, K_LEASE "." K_PIECES,
                    "not an array of piece indexes (at most %d, and no more than pieces)",
                    ANNOUNCE_LEASE_MAX);
    rc =
        reply_uint(lease, K_EXPIRES_MS, K_LEASE "." K_EXPIRES_MS, 0, UINT32_MAX, &exp, err, errlen);
    if (rc < 0)
        return rc;
    d->lease = calloc(json_array_size(pieces) + 1, sizeof(*d->lease));
    if (d->lease == NULL)
        return nomem(err, errlen);
    r->lease = d->lease;
    json_array_foreach(pieces, i, v)
    {
        json_int_t n = json_integer_value(v);

        if (!json_is_integer(v) || n < 0 || (uint64_t)n >= r->pieces ||
            (r->nlease > 0 && (uint32_t)n <= d->lease[r->nlease - 1]))
            return fail(err, errlen, K_LEASE "." K_PIECES,
                        "entry %zu out of range or not ascending", i);
        d->lease[r->nlease++] = (uint32_t)n;
    }
    r->has_lease = true;
    r->lease_expires_ms = exp;
    return 0;
}

static int reply_decode(const char *body, size_t len, struct announce_reply_doc *out, char *err,
                        size_t errlen)
{
    struct announce_reply *r = &out->reply;
    json_error_t jerr;
    const char *algo;
    uint64_t v;
    int rc;

    memset(out, 0, sizeof(*out));
    out->json = load(body, len, &jerr);
    if (out->json == NULL)
        return fail(err, errlen, "(body)", "invalid JSON: %s (line %d, column %d)", jerr.text,
                    jerr.line, jerr.column);
    if (!json_is_object(out->json))
        return fail(err, errlen, "(body)", "not a JSON object");
    if ((rc = reply_uint(out->json, K_INTERVAL_MS, K_INTERVAL_MS, ANNOUNCE_INTERVAL_MIN_MS,
                         ANNOUNCE_INTERVAL_MAX_MS, &r->interval_ms, err, errlen)) < 0 ||
        (rc = reply_uint(out->json, K_PIECE_LENGTH, K_PIECE_LENGTH, 1, UINT32_MAX, &r->piece_length,
                         err, errlen)) < 0 ||
        (rc = reply_uint(out->json, K_PIECES, K_PIECES, 0, WIRE_PIECES_MAX, &v, err, errlen)) < 0)
        return rc;
    r->pieces = (uint32_t)v;
    algo = c_string(json_object_get(out->json, K_HASH_ALGO));
    if (algo == NULL || wire_hash_algo_parse(algo, &r->hash_algo) < 0)
        return fail(err, errlen, K_HASH_ALGO, "not xxh3-128 or sha256");
    r->hash_len = wire_hash_len(r->hash_algo);
    if ((rc = reply_seq(out->json, out, err, errlen)) < 0 ||
        (rc = reply_hashes(json_object_get(out->json, K_HASHES), out, err, errlen)) < 0 ||
        (rc = reply_confirmed(json_object_get(out->json, K_CONFIRMED), out, err, errlen)) < 0 ||
        (rc = reply_peers(json_object_get(out->json, K_PEERS), out, err, errlen)) < 0)
        return rc;
    return reply_lease(json_object_get(out->json, K_LEASE), out, err, errlen);
}

int announce_reply_decode(const char *body, size_t len, struct announce_reply_doc *out, char *err,
                          size_t errlen)
{
    int rc = reply_decode(body, len, out, err, errlen);
    /* A refused reply leaves nothing behind, not half a table. */
    if (rc < 0)
        announce_reply_doc_dispose(out);
    return rc;
}

void announce_reply_doc_dispose(struct announce_reply_doc *d)
{
    json_decref(d->json);
    free(d->hashes);
    free(d->hashed);
    free(d->confirmed);
    free(d->peers);
    free(d->lease);
    memset(d, 0, sizeof(*d));
}
