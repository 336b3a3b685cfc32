/* LRU accounting for the blob cache: a pure data structure, no I/O.
 *
 * Entries are keyed by a string (a digest), carry a size and a last-use time
 * in milliseconds, and can be pinned (a pinned entry is never chosen for
 * eviction: it is being read or written).
 */
#ifndef SHOAL_LRU_H
#define SHOAL_LRU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lru;

/* NULL on allocation failure. */
struct lru *lru_create(void);
void lru_destroy(struct lru *l);

/* Inserts key (copied) or, if present, updates its size and use time. 0 or -ENOMEM. */
int lru_add(struct lru *l, const char *key, uint64_t size, uint64_t now_ms);
/* Marks key used at now_ms. No-op if absent. */
void lru_touch(struct lru *l, const char *key, uint64_t now_ms);
/* Removes key. 0, or SHOAL_ENOT_FOUND. Removing a pinned key is allowed (the
 * pins are dropped with it). */
int lru_remove(struct lru *l, const char *key);
bool lru_contains(const struct lru *l, const char *key);
/* Pin counts nest. Unpinning an absent or unpinned key is a no-op. */
void lru_pin(struct lru *l, const char *key);
void lru_unpin(struct lru *l, const char *key);
bool lru_pinned(const struct lru *l, const char *key);

uint64_t lru_total_bytes(const struct lru *l);
size_t lru_count(const struct lru *l);

/* Eviction between watermarks: if the total exceeds `high`, removes unpinned
 * entries, least recently used first (ties: smaller key first), until the
 * total is at most `low` or only pinned entries remain. victim(key, size,
 * arg) is called for each removed entry before it is freed (key is
 * borrowed; victim must not call back into this lru). Returns the number of
 * entries removed. */
size_t lru_evict(struct lru *l, uint64_t high, uint64_t low,
                 void (*victim)(const char *key, uint64_t size, void *arg), void *arg);

#endif
