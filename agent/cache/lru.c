/* LRU accounting: a chained hash map from key to entry, plus an intrusive
 * doubly-linked list ordered by (last use, key), least recently used first.
 */
#include "cache/lru.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"

struct lru_entry {
    struct lru_entry *prev; /* towards the LRU end */
    struct lru_entry *next; /* towards the MRU end */
    struct lru_entry *hnext;
    uint64_t hash;
    uint64_t size;
    uint64_t time_ms;
    unsigned pins;
    char key[];
};

struct lru {
    struct lru_entry **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    uint64_t total;
    struct lru_entry *head; /* least recently used */
    struct lru_entry *tail; /* most recently used */
};

#define MIN_BUCKETS 64

static uint64_t hash_key(const char *key)
{
    /* FNV-1a: keys are digests, already uniformly distributed, so anything
     * cheap and stable will do. */
    uint64_t h = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return h;
}

static struct lru_entry *find(const struct lru *l, const char *key)
{
    uint64_t h = hash_key(key);
    for (struct lru_entry *e = l->buckets[h & (l->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

/* True if a sorts before b, i.e. a is the better eviction candidate. */
static bool before(const struct lru_entry *a, const struct lru_entry *b)
{
    if (a->time_ms != b->time_ms)
        return a->time_ms < b->time_ms;
    return strcmp(a->key, b->key) < 0;
}

static void list_unlink(struct lru *l, struct lru_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        l->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        l->tail = e->prev;
    e->prev = e->next = NULL;
}

/* Inserts e in sorted position. Searching from the MRU end makes the usual
 * case (a use at the current time) O(1); only out-of-order times, as when
 * the cache is indexed at startup, walk further. */
static void list_insert(struct lru *l, struct lru_entry *e)
{
    struct lru_entry *after = l->tail;
    while (after && before(e, after))
        after = after->prev;
    e->prev = after;
    if (after) {
        e->next = after->next;
        after->next = e;
    } else {
        e->next = l->head;
        l->head = e;
    }
    if (e->next)
        e->next->prev = e;
    else
        l->tail = e;
}

static int grow(struct lru *l)
{
    size_t n = l->nbuckets * 2;
    struct lru_entry **b = calloc(n, sizeof(*b));
    if (!b)
        return -ENOMEM;
    for (size_t i = 0; i < l->nbuckets; i++) {
        struct lru_entry *e = l->buckets[i];
        while (e) {
            struct lru_entry *next = e->hnext;
            size_t j = e->hash & (n - 1);
            e->hnext = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(l->buckets);
    l->buckets = b;
    l->nbuckets = n;
    return 0;
}

static void hash_unlink(struct lru *l, struct lru_entry *e)
{
    struct lru_entry **pp = &l->buckets[e->hash & (l->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
}

static void drop(struct lru *l, struct lru_entry *e)
{
    hash_unlink(l, e);
    list_unlink(l, e);
    l->count--;
    l->total -= e->size;
    free(e);
}

struct lru *lru_create(void)
{
    struct lru *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->buckets = calloc(MIN_BUCKETS, sizeof(*l->buckets));
    if (!l->buckets) {
        free(l);
        return NULL;
    }
    l->nbuckets = MIN_BUCKETS;
    return l;
}

void lru_destroy(struct lru *l)
{
    if (!l)
        return;
    struct lru_entry *e = l->head;
    while (e) {
        struct lru_entry *next = e->next;
        free(e);
        e = next;
    }
    free(l->buckets);
    free(l);
}

int lru_add(struct lru *l, const char *key, uint64_t size, uint64_t now_ms)
{
    struct lru_entry *e = find(l, key);
    if (e) {
        l->total = l->total - e->size + size;
        e->size = size;
        e->time_ms = now_ms;
        list_unlink(l, e);
        list_insert(l, e);
        return 0;
    }
    /* Keep the load factor at most 1; a failed grow only costs speed. */
    if (l->count >= l->nbuckets)
        (void)grow(l);
    size_t klen = strlen(key);
    e = malloc(sizeof(*e) + klen + 1);
    if (!e)
        return -ENOMEM;
    memset(e, 0, sizeof(*e));
    memcpy(e->key, key, klen + 1);
    e->hash = hash_key(key);
    e->size = size;
    e->time_ms = now_ms;
    size_t i = e->hash & (l->nbuckets - 1);
    e->hnext = l->buckets[i];
    l->buckets[i] = e;
    list_insert(l, e);
    l->count++;
    l->total += size;
    return 0;
}

void lru_touch(struct lru *l, const char *key, uint64_t now_ms)
{
    struct lru_entry *e = find(l, key);
    if (!e)
        return;
    e->time_ms = now_ms;
    list_unlink(l, e);
    list_insert(l, e);
}

int lru_remove(struct lru *l, const char *key)
{
    struct lru_entry *e = find(l, key);
    if (!e)
        return SHOAL_ENOT_FOUND;
    drop(l, e);
    return 0;
}

bool lru_contains(const struct lru *l, const char *key)
{
    return find(l, key) != NULL;
}

void lru_pin(struct lru *l, const char *key)
{
    struct lru_entry *e = find(l, key);
    if (e)
        e->pins++;
}

void lru_unpin(struct lru *l, const char *key)
{
    struct lru_entry *e = find(l, key);
    if (e && e->pins > 0)
        e->pins--;
}

bool lru_pinned(const struct lru *l, const char *key)
{
    const struct lru_entry *e = find(l, key);
    return e && e->pins > 0;
}

uint64_t lru_total_bytes(const struct lru *l)
{
    return l->total;
}

size_t lru_count(const struct lru *l)
{
    return l->count;
}

size_t lru_evict(struct lru *l, uint64_t high, uint64_t low,
                 void (*victim)(const char *key, uint64_t size, void *arg), void *arg)
{
    size_t n = 0;
    if (l->total <= high)
        return 0;
    struct lru_entry *e = l->head;
    while (e && l->total > low) {
        struct lru_entry *next = e->next;
        if (e->pins == 0) {
            if (victim)
                victim(e->key, e->size, arg);
            drop(l, e);
            n++;
        }
        e = next;
    }
    return n;
}
