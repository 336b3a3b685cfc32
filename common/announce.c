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
#define K_CONFIRMED_SEEN "confirmed_seen"
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
        (r->has_confirmed_seen && (!r->has_hashes_from || r->confirmed_seen > WIRE_PIECES_MAX)) ||
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
    if (r->has_confirmed_seen &&
        (rc = put(o, K_CONFIRMED_SEEN, json_integer((json_int_t)r->confirmed_seen))) < 0)
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

/* ---- Request decoder, fast path -------------------------------------------
 *
 * The tracker decodes an announce per request, tens of thousands a second,
 * and a jansson tree costs more than the rest of the announce. Requests are
 * almost always what an agent's encoder writes, so this path parses exactly
 * that subset of JSON in place: one object with the known keys at most once
 * each, strings of printable ASCII without escapes, canonical non-negative
 * integers, true and false, the hashes object, the lease_failed and
 * bad_peers arrays. Anything else (an escape, a float, an unknown or
 * repeated key, a value out of range, a missing field) makes it give up
 * without a trace, and the jansson path below decodes the request, with
 * its messages. So both paths accept and refuse the same bodies, and
 * decode them alike. */

struct fast {
    char *p, *end;
};

static void fast_ws(struct fast *f)
{
    while (f->p < f->end && (*f->p == ' ' || *f->p == '\t' || *f->p == '\n' || *f->p == '\r'))
        f->p++;
}

static bool fast_ch(struct fast *f, char c)
{
    fast_ws(f);
    if (f->p < f->end && *f->p == c) {
        f->p++;
        return true;
    }
    return false;
}

/* A string without escapes, control characters or non-ASCII bytes,
 * NUL-terminated in place (its closing quote overwritten). */
static const char *fast_str(struct fast *f)
{
    char *s;

    if (!fast_ch(f, '"'))
        return NULL;
    s = f->p;
    while (f->p < f->end && *f->p != '"') {
        unsigned char c = (unsigned char)*f->p;
        if (c < 0x20 || c >= 0x7f || c == '\\')
            return NULL;
        f->p++;
    }
    if (f->p == f->end)
        return NULL;
    *f->p++ = '\0';
    return s;
}

/* A canonical non-negative integer that fits jansson's json_int_t. */
static bool fast_uint(struct fast *f, uint64_t *out)
{
    uint64_t v = 0;
    size_t n = 0;

    fast_ws(f);
    while (f->p < f->end && *f->p >= '0' && *f->p <= '9') {
        if (n == 18)
            return false;
        v = v * 10 + (uint64_t)(*f->p++ - '0');
        n++;
    }
    if (n == 0 || (n > 1 && f->p[-(ptrdiff_t)n] == '0'))
        return false;
    if (f->p < f->end && (*f->p == '.' || *f->p == 'e' || *f->p == 'E'))
        return false;
    *out = v;
    return true;
}

static bool fast_bool(struct fast *f, bool *out)
{
    fast_ws(f);
    if (f->end - f->p >= 4 && memcmp(f->p, "true", 4) == 0) {
        f->p += 4;
        *out = true;
        return true;
    }
    if (f->end - f->p >= 5 && memcmp(f->p, "false", 5) == 0) {
        f->p += 5;
        *out = false;
        return true;
    }
    return false;
}

#define FAST_DUP_HASHES 64 /* more hashes than this go the slow way (duplicate check) */

static bool fast_hashes(struct fast *f, enum wire_hash_algo algo, struct announce_req_doc *d)
{
    size_t cap = 8, n = 0;

    if (!fast_ch(f, '{'))
        return false;
    if (fast_ch(f, '}'))
        return true;
    d->hashes = malloc(cap * sizeof(*d->hashes));
    if (d->hashes == NULL)
        return false;
    do {
        const char *key = fast_str(f), *hex;
        if (key == NULL || !fast_ch(f, ':') || (hex = fast_str(f)) == NULL)
            return false;
        if (n == cap) {
            struct announce_hash *v;
            if (cap >= FAST_DUP_HASHES)
                return false;
            cap *= 2;
            v = realloc(d->hashes, cap * sizeof(*v));
            if (v == NULL)
                return false;
            d->hashes = v;
        }
        struct announce_hash *h = &d->hashes[n];
        if (parse_index(key, &h->index) < 0 ||
            wire_hash_from_hex(algo, hex, strlen(hex), h->hash) < 0)
            return false;
        for (size_t i = 0; i < n; i++)
            if (d->hashes[i].index == h->index)
                return false; /* a duplicate key: jansson refuses it, with its words */
        n++;
    } while (fast_ch(f, ','));
    if (!fast_ch(f, '}'))
        return false;
    d->req.hashes = d->hashes;
    d->req.nhashes = n;
    return true;
}

static bool fast_failed(struct fast *f, struct announce_req_doc *d)
{
    size_t cap = 0, n = 0;

    if (!fast_ch(f, '['))
        return false;
    if (fast_ch(f, ']'))
        return true;
    do {
        uint64_t v;
        if (!fast_uint(f, &v))
            return false;
        if (n == cap) {
            uint64_t *a;
            cap = cap ? cap * 2 : 8;
            if (cap > WIRE_PIECES_MAX)
                return false;
            a = realloc(d->lease_failed, cap * sizeof(*a));
            if (a == NULL)
                return false;
            d->lease_failed = a;
        }
        d->lease_failed[n++] = v;
    } while (fast_ch(f, ','));
    if (!fast_ch(f, ']'))
        return false;
    d->req.lease_failed = d->lease_failed;
    d->req.nlease_failed = n;
    return true;
}

static bool fast_bad(struct fast *f, struct announce_req_doc *d)
{
    size_t n = 0;

    if (!fast_ch(f, '['))
        return false;
    if (fast_ch(f, ']'))
        return true;
    do {
        const char *a = fast_str(f);
        if (a == NULL || n == ANNOUNCE_BAD_PEERS_MAX)
            return false;
        d->bad_peers[n++] = a;
    } while (fast_ch(f, ','));
    if (!fast_ch(f, ']'))
        return false;
    d->req.bad_peers = d->bad_peers;
    d->req.nbad_peers = n;
    return true;
}

enum fast_key {
    FK_DIGEST,
    FK_SIZE,
    FK_AGENT,
    FK_ADDR,
    FK_EVENT,
    FK_HAVE,
    FK_COMPLETE,
    FK_WANT_LEASE,
    FK_HASHES,
    FK_LEASE_FAILED,
    FK_BAD_PEERS,
    FK_HASHES_FROM,
    FK_TABLE,
    FK_CONFIRMED_SEEN,
    FK_COUNT
};

static const char *const fast_keys[FK_COUNT] = {
    K_DIGEST,     K_SIZE,   K_AGENT,        K_ADDR,      K_EVENT,       K_HAVE,  K_COMPLETE,
    K_WANT_LEASE, K_HASHES, K_LEASE_FAILED, K_BAD_PEERS, K_HASHES_FROM, K_TABLE, K_CONFIRMED_SEEN,
};

/* 1 decoded, 0 give up (the caller disposes what was set and takes the slow
 * path). */
static int req_fast(const char *body, size_t len, enum wire_hash_algo algo,
                    struct announce_req_doc *d)
{
    struct announce_req *r = &d->req;
    uint32_t seen = 0;
    const char *event = NULL;
    struct fast f;

    d->text = malloc(len + 1);
    if (d->text == NULL)
        return 0;
    memcpy(d->text, body, len);
    d->text[len] = '\0';
    f.p = d->text;
    f.end = d->text + len;
    if (!fast_ch(&f, '{'))
        return 0;
    if (!fast_ch(&f, '}')) {
        do {
            const char *key = fast_str(&f);
            int k;
            bool ok = false;

            if (key == NULL || !fast_ch(&f, ':'))
                return 0;
            for (k = 0; k < FK_COUNT && strcmp(key, fast_keys[k]) != 0; k++)
                ;
            if (k == FK_COUNT || (seen & (1u << k)))
                return 0;
            seen |= 1u << k;
            switch ((enum fast_key)k) {
            case FK_DIGEST:
                ok = (r->digest = fast_str(&f)) != NULL;
                break;
            case FK_AGENT:
                ok = (r->agent = fast_str(&f)) != NULL;
                break;
            case FK_ADDR:
                ok = (r->addr = fast_str(&f)) != NULL;
                break;
            case FK_EVENT:
                ok = (event = fast_str(&f)) != NULL && announce_event_parse(event, &r->event) == 0;
                break;
            case FK_SIZE:
                ok = fast_uint(&f, &r->size);
                break;
            case FK_HAVE:
                ok = fast_uint(&f, &r->have);
                break;
            case FK_HASHES_FROM:
                ok = fast_uint(&f, &r->hashes_from) && r->hashes_from <= WIRE_PIECES_MAX;
                break;
            case FK_TABLE:
                ok = fast_uint(&f, &r->table) && r->table <= ANNOUNCE_TABLE_MAX;
                break;
            case FK_CONFIRMED_SEEN:
                ok = fast_uint(&f, &r->confirmed_seen) && r->confirmed_seen <= WIRE_PIECES_MAX;
                break;
            case FK_COMPLETE:
                ok = fast_bool(&f, &r->complete);
                break;
            case FK_WANT_LEASE:
                ok = fast_bool(&f, &r->want_lease);
                break;
            case FK_HASHES:
                ok = fast_hashes(&f, algo, d);
                break;
            case FK_LEASE_FAILED:
                ok = fast_failed(&f, d);
                break;
            case FK_BAD_PEERS:
                ok = fast_bad(&f, d);
                break;
            case FK_COUNT:
                break;
            }
            if (!ok)
                return 0;
        } while (fast_ch(&f, ','));
        if (!fast_ch(&f, '}'))
            return 0;
    }
    fast_ws(&f);
    if (f.p != f.end)
        return 0;
    if (!(seen & (1u << FK_DIGEST)) || !(seen & (1u << FK_SIZE)) || !(seen & (1u << FK_AGENT)) ||
        !(seen & (1u << FK_ADDR)))
        return 0;
    if (!(seen & (1u << FK_HASHES_FROM)) != !(seen & (1u << FK_TABLE)))
        return 0;
    if ((seen & (1u << FK_CONFIRMED_SEEN)) && !(seen & (1u << FK_HASHES_FROM)))
        return 0;
    r->has_hashes_from = (seen & (1u << FK_HASHES_FROM)) != 0;
    r->has_confirmed_seen = (seen & (1u << FK_CONFIRMED_SEEN)) != 0;
    return 1;
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

/* "confirmed_seen": a count in the table "table" names, so only with it. */
static int get_confirmed_seen(json_t *doc, struct announce_req *r, char *err, size_t errlen)
{
    int rc;

    if (json_object_get(doc, K_CONFIRMED_SEEN) == NULL)
        return 0;
    if (!r->has_hashes_from)
        BAD(K_CONFIRMED_SEEN ": only with " K_HASHES_FROM " and " K_TABLE);
    if ((rc = get_uint(doc, K_CONFIRMED_SEEN, true, &r->confirmed_seen, err, errlen)) < 0)
        return rc;
    if (r->confirmed_seen > WIRE_PIECES_MAX)
        BAD(K_CONFIRMED_SEEN ": more than %u", WIRE_PIECES_MAX);
    r->has_confirmed_seen = true;
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
    if ((rc = get_hashes_from(doc, r, err, errlen)) < 0 ||
        (rc = get_confirmed_seen(doc, r, err, errlen)) < 0)
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
    if (req_fast(body, len, algo, out) == 1)
        return 0;
    /* Not the common shape, or not valid: start over with jansson. */
    announce_req_doc_dispose(out);
    out->req.event = ANNOUNCE_EVENT_PROGRESS;
    out->req.hash_len = wire_hash_len(algo);
    out->json = load(body, len, &jerr);
    if (out->json == NULL)
        BAD("body: invalid JSON: %s (line %d, column %d)", shoal_one_line(jerr.text), jerr.line,
            jerr.column);
    return decode_req(out->json, algo, out, err, errlen);
}

void announce_req_doc_dispose(struct announce_req_doc *d)
{
    free(d->text);
    json_decref(d->json);
    free(d->hashes);
    free(d->lease_failed);
    memset(d, 0, sizeof(*d));
}

#undef BAD

/* ---- Reply encoder ------------------------------------------------------- */

/* The tracker encodes a reply per announce, tens of thousands a second, so
 * it writes the JSON itself instead of building a jansson tree: the same
 * bytes jansson's compact dump gives (key order, escapes, integers), which
 * the tests pin. */

/* Appends s as a JSON string; -EINVAL for invalid UTF-8, as json_string
 * refuses it. */
static int put_str(struct buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    char esc[8];
    int rc;

    if ((rc = buf_append(b, "\"", 1)) < 0)
        return rc;
    while (*p) {
        const unsigned char *run = p;
        /* A run of plain ASCII goes in one append. */
        while (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p > run && (rc = buf_append(b, run, (size_t)(p - run))) < 0)
            return rc;
        if (*p == '\0')
            break;
        if (*p >= 0x80) {
            size_t n = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc2 ? 2 : 0;
            uint32_t cp = n == 4 ? *p & 0x07u : n == 3 ? *p & 0x0fu : *p & 0x1fu;
            if (n == 0 || *p > 0xf4)
                return -EINVAL;
            for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xc0) != 0x80)
                    return -EINVAL;
                cp = cp << 6 | (p[i] & 0x3fu);
            }
            if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
                (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
                return -EINVAL;
            if ((rc = buf_append(b, p, n)) < 0)
                return rc;
            p += n;
            continue;
        }
        switch (*p) {
        case '"':
            memcpy(esc, "\\\"", 3);
            break;
        case '\\':
            memcpy(esc, "\\\\", 3);
            break;
        case '\b':
            memcpy(esc, "\\b", 3);
            break;
        case '\f':
            memcpy(esc, "\\f", 3);
            break;
        case '\n':
            memcpy(esc, "\\n", 3);
            break;
        case '\r':
            memcpy(esc, "\\r", 3);
            break;
        case '\t':
            memcpy(esc, "\\t", 3);
            break;
        default:
            snprintf(esc, sizeof(esc), "\\u%04X", *p);
            break;
        }
        if ((rc = buf_append(b, esc, strlen(esc))) < 0)
            return rc;
        p++;
    }
    return buf_append(b, "\"", 1);
}

/* Appends v in decimal. */
static int put_u64(struct buf *b, uint64_t v)
{
    char d[24];
    size_t i = sizeof(d);

    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return buf_append(b, d + i, sizeof(d) - i);
}

/* Appends `"key":` (key is one of ours: no escaping needed). */
static int put_key(struct buf *b, const char *comma_key)
{
    return buf_append(b, comma_key, strlen(comma_key));
}

#define PUT(expr)                                                                                  \
    do {                                                                                           \
        if ((rc = (expr)) < 0)                                                                     \
            return rc;                                                                             \
    } while (0)

static int put_hash(struct buf *b, bool first, uint32_t idx, const uint8_t *h, size_t len)
{
    /* One entry, `,"idx":"hex"`, assembled here and appended at once. */
    char e[16 + WIRE_HASH_HEX_MAX + 8];
    char d[12];
    size_t n = 0, k = sizeof(d);

    do {
        d[--k] = (char)('0' + idx % 10);
        idx /= 10;
    } while (idx);
    if (!first)
        e[n++] = ',';
    e[n++] = '"';
    memcpy(e + n, d + k, sizeof(d) - k);
    n += sizeof(d) - k;
    memcpy(e + n, "\":\"", 3);
    n += 3;
    wire_hash_to_hex(h, len, e + n);
    n += 2 * len;
    e[n++] = '"';
    return buf_append(b, e, n);
}

/* ,"confirmed":"<hex bitfield>": the pieces whose hash is confirmed; left
 * out when none is. With has_seq the hashes themselves may have gone out
 * in earlier replies, so the flags are taken as they are. */
static int put_confirmed(struct buf *out, const struct announce_reply *r)
{
    static const char digits[] = "0123456789abcdef";
    size_t n = wire_bitfield_bytes(r->pieces);
    bool any = false;
    int rc;

    for (uint32_t i = 0; i < r->pieces && !any; i++)
        any = r->confirmed[i] && (r->has_seq || (r->hashed != NULL && r->hashed[i]));
    if (!any)
        return 0;
    if ((rc = put_key(out, ",\"" K_CONFIRMED "\":\"")) < 0)
        return rc;
    for (size_t b = 0; b < n; b++) {
        unsigned byte = 0;
        for (unsigned k = 0; k < 8; k++) {
            uint32_t i = (uint32_t)(b * 8 + k);
            if (i < r->pieces && r->confirmed[i] &&
                (r->has_seq || (r->hashed != NULL && r->hashed[i])))
                byte |= 0x80u >> k;
        }
        char hex[2] = {digits[byte >> 4], digits[byte & 15]};
        if ((rc = buf_append(out, hex, 2)) < 0)
            return rc;
    }
    return buf_append(out, "\"", 1);
}

static int reply_encode(const struct announce_reply *r, struct buf *out)
{
    bool first = true;
    int rc;

    if (r->hash_len != wire_hash_len(r->hash_algo) || r->hash_len == 0)
        return -EINVAL;
    if (r->has_seq &&
        (r->hashes_seq > r->nhashed || r->nhashed > r->pieces || r->table > ANNOUNCE_TABLE_MAX))
        return -EINVAL;
    for (size_t i = 0; r->hash_list != NULL && i < r->nhash_list; i++)
        if (r->hash_list[i].index >= r->pieces)
            return -EINVAL;
    PUT(put_key(out, "{\"" K_INTERVAL_MS "\":"));
    PUT(put_u64(out, r->interval_ms));
    PUT(put_key(out, ",\"" K_PIECE_LENGTH "\":"));
    PUT(put_u64(out, r->piece_length));
    PUT(put_key(out, ",\"" K_PIECES "\":"));
    PUT(put_u64(out, r->pieces));
    PUT(put_key(out, ",\"" K_HASH_ALGO "\":"));
    PUT(put_str(out, wire_hash_algo_name(r->hash_algo)));
    if (r->has_seq) {
        PUT(put_key(out, ",\"" K_TABLE "\":"));
        PUT(put_u64(out, r->table));
        PUT(put_key(out, ",\"" K_HASHES_SEQ "\":"));
        PUT(put_u64(out, r->hashes_seq));
        PUT(put_key(out, ",\"" K_HASHED "\":"));
        PUT(put_u64(out, r->nhashed));
    }
    PUT(put_key(out, ",\"" K_HASHES "\":{"));
    for (size_t i = 0; r->hash_list != NULL && i < r->nhash_list; i++, first = false)
        PUT(put_hash(out, first, r->hash_list[i].index, r->hash_list[i].hash, r->hash_len));
    for (uint32_t i = 0;
         r->hash_list == NULL && r->hashes != NULL && r->hashed != NULL && i < r->pieces; i++) {
        if (!r->hashed[i])
            continue;
        PUT(put_hash(out, first, i, r->hashes + (size_t)i * r->hash_len, r->hash_len));
        first = false;
    }
    PUT(buf_append(out, "}", 1));
    if (r->confirmed != NULL)
        PUT(put_confirmed(out, r));
    PUT(put_key(out, ",\"" K_PEERS "\":["));
    for (size_t i = 0; i < r->npeers; i++) {
        const struct announce_peer *p = &r->peers[i];

        if (p->agent == NULL || p->addr == NULL)
            return -EINVAL;
        PUT(put_key(out, i ? ",{\"" K_AGENT "\":" : "{\"" K_AGENT "\":"));
        PUT(put_str(out, p->agent));
        PUT(put_key(out, ",\"" K_ADDR "\":"));
        PUT(put_str(out, p->addr));
        PUT(put_key(out, p->complete ? ",\"" K_COMPLETE "\":true,\"" K_HAVE "\":"
                                     : ",\"" K_COMPLETE "\":false,\"" K_HAVE "\":"));
        PUT(put_u64(out, p->have));
        PUT(buf_append(out, "}", 1));
    }
    PUT(buf_append(out, "]", 1));
    if (r->has_lease) {
        PUT(put_key(out, ",\"" K_LEASE "\":{\"" K_PIECES "\":["));
        for (size_t i = 0; i < r->nlease; i++) {
            if (i)
                PUT(buf_append(out, ",", 1));
            PUT(put_u64(out, r->lease[i]));
        }
        PUT(put_key(out, "],\"" K_EXPIRES_MS "\":"));
        PUT(put_u64(out, r->lease_expires_ms));
        PUT(buf_append(out, "}", 1));
    }
    return buf_append(out, "}", 1);
}

#undef PUT

int announce_reply_encode(const struct announce_reply *r, struct buf *out)
{
    size_t len0 = out->len;
    int rc = reply_encode(r, out);

    /* Nothing half-written stays behind. */
    if (rc < 0 && out->data != NULL) {
        out->len = len0;
        out->data[len0] = '\0';
    }
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
    uint64_t seq = 0, n = 0;
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
    uint64_t exp = 0;
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
    uint64_t v = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    out->json = load(body, len, &jerr);
    if (out->json == NULL)
        return fail(err, errlen, "(body)", "invalid JSON: %s (line %d, column %d)",
                    shoal_one_line(jerr.text), jerr.line, jerr.column);
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
