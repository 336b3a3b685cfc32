/* The agent inventory. See agents.h. */
#include "agents.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "shoal/error.h"

struct tracker_agents {
    uint64_t timeout_ms;
    size_t max;
    struct tracker_agent *v;
    size_t n, cap;
    json_t *index; /* name -> position in v */
};

int tracker_agents_create(uint64_t timeout_ms, size_t max, struct tracker_agents **out)
{
    *out = NULL;
    if (timeout_ms == 0)
        return SHOAL_ECONFIG;
    struct tracker_agents *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->index = json_object();
    if (!a->index) {
        free(a);
        return -ENOMEM;
    }
    a->timeout_ms = timeout_ms;
    a->max = max ? max : TRACKER_AGENTS_MAX;
    *out = a;
    return 0;
}

void tracker_agents_destroy(struct tracker_agents *a)
{
    if (!a)
        return;
    json_decref(a->index);
    free(a->v);
    free(a);
}

static void remote_addr(const char *remote, char *out, size_t outlen)
{
    out[0] = '\0';
    if (!remote)
        return;
    const char *end;
    if (remote[0] == '[') {
        remote++;
        end = strchr(remote, ']');
    } else {
        end = strrchr(remote, ':');
        /* More than one colon and no brackets: a bare IPv6 address. */
        if (end && strchr(remote, ':') != end)
            end = NULL;
    }
    size_t n = end ? (size_t)(end - remote) : strlen(remote);
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, remote, n);
    out[n] = '\0';
}

int tracker_agents_heartbeat(struct tracker_agents *a, const struct agent_info *info,
                             const char *remote, uint64_t now_ms)
{
    json_t *pos = json_object_get(a->index, info->name);
    struct tracker_agent *ag;
    int fresh = 0;

    if (pos) {
        ag = &a->v[json_integer_value(pos)];
        if (strcmp(ag->info.mirror_url, info->mirror_url) != 0) {
            fresh = 1;
            ag->first_seen_ms = now_ms;
        }
    } else {
        if (a->n >= a->max)
            return SHOAL_EBUSY;
        if (a->n == a->cap) {
            size_t ncap = a->cap ? a->cap * 2 : 16;
            struct tracker_agent *nv = realloc(a->v, ncap * sizeof(*nv));
            if (!nv)
                return -ENOMEM;
            a->v = nv;
            a->cap = ncap;
        }
        if (json_object_set_new(a->index, info->name, json_integer((json_int_t)a->n)) < 0)
            return -ENOMEM;
        ag = &a->v[a->n++];
        memset(ag, 0, sizeof(*ag));
        ag->first_seen_ms = now_ms;
        fresh = 1;
    }
    ag->info = *info;
    remote_addr(remote, ag->remote, sizeof(ag->remote));
    ag->last_seen_ms = now_ms;
    return fresh;
}

size_t tracker_agents_expire(struct tracker_agents *a, uint64_t now_ms,
                             void (*gone)(const struct tracker_agent *ag, void *arg), void *arg)
{
    size_t w = 0, dropped = 0;
    for (size_t r = 0; r < a->n; r++) {
        struct tracker_agent *ag = &a->v[r];
        if (now_ms > ag->last_seen_ms && now_ms - ag->last_seen_ms > a->timeout_ms) {
            if (gone)
                gone(ag, arg);
            json_object_del(a->index, ag->info.name);
            dropped++;
            continue;
        }
        if (w != r) {
            a->v[w] = *ag;
            json_object_set_new(a->index, a->v[w].info.name, json_integer((json_int_t)w));
        }
        w++;
    }
    a->n = w;
    return dropped;
}

size_t tracker_agents_count(const struct tracker_agents *a)
{
    return a->n;
}

const struct tracker_agent *tracker_agents_at(const struct tracker_agents *a, size_t i)
{
    return i < a->n ? &a->v[i] : NULL;
}

const struct tracker_agent *tracker_agents_find(const struct tracker_agents *a, const char *name)
{
    json_t *pos = name ? json_object_get(a->index, name) : NULL;
    return pos ? &a->v[json_integer_value(pos)] : NULL;
}

uint64_t tracker_agents_timeout_ms(const struct tracker_agents *a)
{
    return a->timeout_ms;
}
