/* Suspects: addresses agents reported for sending pieces that failed their
 * hash; see swarm_internal.h. The swarm core (swarm.c) decides when to mark
 * and how long; this file only keeps the set. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "swarm_internal.h"

struct suspect *tracker_suspects_find(const struct tracker_suspects *x, const char *addr)
{
    uint64_t key = tracker_fnv1a(addr);

    for (size_t i = 0; i < x->n; i++) {
        if (x->v[i].key == key && strcmp(x->v[i].addr, addr) == 0)
            return &x->v[i];
    }
    return NULL;
}

bool tracker_suspects_has(const struct tracker_suspects *x, const char *addr, uint64_t now_ms)
{
    const struct suspect *e = x->n > 0 ? tracker_suspects_find(x, addr) : NULL;

    return e != NULL && e->until_ms > now_ms && e->nreporters >= (x->quorum ? x->quorum : 1);
}

int tracker_suspects_reserve(struct tracker_suspects *x, size_t nreports)
{
    size_t need = x->n + nreports;
    size_t ncap;
    struct suspect *v;

    if (nreports == 0)
        return 0;
    if (need > TRACKER_MAX_SUSPECTS)
        need = TRACKER_MAX_SUSPECTS;
    if (need <= x->cap)
        return 0;
    ncap = x->cap ? x->cap : 4;
    while (ncap < need)
        ncap *= 2;
    if (ncap > TRACKER_MAX_SUSPECTS)
        ncap = TRACKER_MAX_SUSPECTS;
    v = realloc(x->v, ncap * sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    x->v = v;
    x->cap = ncap;
    return 0;
}

/* At the cap the mark expiring first gives way: it is the one closest to
 * being handed out again anyway. */
void tracker_suspects_mark(struct tracker_suspects *x, const char *const *addrs, size_t naddrs,
                           uint64_t reporter, uint64_t until_ms)
{
    for (size_t i = 0; i < naddrs; i++) {
        const char *addr = addrs[i];
        struct suspect *e = tracker_suspects_find(x, addr);

        if (e == NULL) {
            if (x->n < TRACKER_MAX_SUSPECTS) {
                e = &x->v[x->n++];
            } else {
                e = &x->v[0];
                for (size_t j = 1; j < x->n; j++) {
                    if (x->v[j].until_ms < e->until_ms)
                        e = &x->v[j];
                }
            }
            e->key = tracker_fnv1a(addr);
            memcpy(e->addr, addr, strlen(addr) + 1);
            e->until_ms = 0;
            e->nreporters = 0;
        }
        if (until_ms > e->until_ms)
            e->until_ms = until_ms;
        bool known = false;
        for (unsigned k = 0; k < e->nreporters; k++)
            known |= e->reporters[k] == reporter;
        if (!known && e->nreporters < TRACKER_SUSPECT_REPORTERS)
            e->reporters[e->nreporters++] = reporter;
    }
}

void tracker_suspects_expire(struct tracker_suspects *x, uint64_t now_ms)
{
    size_t i = 0;

    while (i < x->n) {
        if (x->v[i].until_ms <= now_ms)
            x->v[i] = x->v[--x->n];
        else
            i++;
    }
}

void tracker_suspects_dispose(struct tracker_suspects *x)
{
    free(x->v);
    x->v = NULL;
    x->n = x->cap = 0;
}
