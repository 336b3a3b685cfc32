/* Suspects: addresses agents reported for sending pieces that failed their
 * hash. Kept per swarm, keyed by address (a report may name an address no
 * peer has yet, and several agent ids may share one); the hand-out leaves
 * them out until their time is up. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"
#include "swarm_internal.h"

/* --- Suspects --------------------------------------------------------------------- */

struct suspect *tracker_suspect_find(struct swarm *w, const char *addr)
{
    uint64_t key = tracker_fnv1a(addr);

    for (size_t i = 0; i < w->nsuspects; i++) {
        if (w->suspects[i].key == key && strcmp(w->suspects[i].addr, addr) == 0)
            return &w->suspects[i];
    }
    return NULL;
}

bool tracker_is_suspect(struct swarm *w, const char *addr, uint64_t now_ms)
{
    const struct suspect *x = w->nsuspects > 0 ? tracker_suspect_find(w, addr) : NULL;

    return x != NULL && x->until_ms > now_ms;
}

/* Grows the suspect array for the request's reports before anything is
 * marked, so running out of memory never leaves half a report applied. */
int tracker_suspects_reserve(const struct tracker_swarms *s, struct swarm *w,
                             const struct tracker_announce_req *req)
{
    size_t need = w->nsuspects + req->nbad_peers;
    size_t ncap;
    struct suspect *v;

    if (s->cfg.bad_peer_off || req->nbad_peers == 0)
        return 0;
    if (need > TRACKER_MAX_SUSPECTS)
        need = TRACKER_MAX_SUSPECTS;
    if (need <= w->suspects_cap)
        return 0;
    ncap = w->suspects_cap ? w->suspects_cap : 4;
    while (ncap < need)
        ncap *= 2;
    if (ncap > TRACKER_MAX_SUSPECTS)
        ncap = TRACKER_MAX_SUSPECTS;
    v = realloc(w->suspects, ncap * sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    w->suspects = v;
    w->suspects_cap = ncap;
    return 0;
}

/* Marks every reported address for bad_peer_ms from now (a second report
 * extends the mark). At the cap the mark expiring first gives way: it is
 * the one closest to being handed out again anyway. Needs suspects_reserve. */
void tracker_mark_suspects(struct tracker_swarms *s, struct swarm *w,
                           const struct tracker_announce_req *req, uint64_t now_ms,
                           struct tracker_announce_reply *out)
{
    uint64_t until = now_ms + s->cfg.bad_peer_ms;

    if (s->cfg.bad_peer_off)
        return;
    for (size_t i = 0; i < req->nbad_peers; i++) {
        const char *addr = req->bad_peers[i];
        struct suspect *x = tracker_suspect_find(w, addr);

        if (x == NULL) {
            if (w->nsuspects < TRACKER_MAX_SUSPECTS) {
                x = &w->suspects[w->nsuspects++];
            } else {
                x = &w->suspects[0];
                for (size_t j = 1; j < w->nsuspects; j++) {
                    if (w->suspects[j].until_ms < x->until_ms)
                        x = &w->suspects[j];
                }
            }
            x->key = tracker_fnv1a(addr);
            memcpy(x->addr, addr, strlen(addr) + 1);
            x->until_ms = 0;
        }
        if (until > x->until_ms)
            x->until_ms = until;
    }
    if (req->nbad_peers > 0)
        out->suspect_ms = s->cfg.bad_peer_ms;
}

/* Drops the marks that ran out. */
void tracker_expire_suspects(struct swarm *w, uint64_t now_ms)
{
    size_t i = 0;

    while (i < w->nsuspects) {
        if (w->suspects[i].until_ms <= now_ms)
            w->suspects[i] = w->suspects[--w->nsuspects];
        else
            i++;
    }
}
