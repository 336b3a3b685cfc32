/* The tracker's inventory of agents (docs/protocol.md, "Agents"): who
 * registered, where their mirror and prewarm API answer, their labels and
 * their cache, and when they last heartbeat. An agent that has not
 * heartbeat for timeout_ms is dropped at the next expiry pass.
 *
 * Agents are keyed by node name: a heartbeat under a known name replaces
 * that entry (an agent that restarted, or moved). Pure core: every call
 * takes now_ms; no I/O.
 */
#ifndef SHOAL_TRACKER_AGENTS_H
#define SHOAL_TRACKER_AGENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal/agent_info.h"

#define TRACKER_AGENTS_MAX 10000
#define TRACKER_REMOTE_MAX 63 /* the address the tracker saw, without the port */

struct tracker_agent {
    struct agent_info info;
    char remote[TRACKER_REMOTE_MAX + 1];
    uint64_t first_seen_ms; /* since this registration (a changed mirror URL restarts it) */
    uint64_t last_seen_ms;
};

struct tracker_agents;

/* timeout_ms: silence after which an agent is dropped (> 0). max: entries
 * (0 = TRACKER_AGENTS_MAX). 0, SHOAL_ECONFIG or -ENOMEM. */
int tracker_agents_create(uint64_t timeout_ms, size_t max, struct tracker_agents **out);
void tracker_agents_destroy(struct tracker_agents *a);

/* Records a heartbeat: info is copied, remote ("ip:port" or "ip") keeps
 * its address part. Returns 1 for an agent not known before (or known at
 * another mirror URL), 0 for a refresh, SHOAL_EBUSY when the inventory is
 * full, -ENOMEM. */
int tracker_agents_heartbeat(struct tracker_agents *a, const struct agent_info *info,
                             const char *remote, uint64_t now_ms);

/* Drops agents silent for longer than the timeout; gone (may be NULL) is
 * told about each before it goes. Returns how many went. */
size_t tracker_agents_expire(struct tracker_agents *a, uint64_t now_ms,
                             void (*gone)(const struct tracker_agent *ag, void *arg), void *arg);

size_t tracker_agents_count(const struct tracker_agents *a);
/* The i-th agent (0 <= i < count), in registration order; borrowed until the
 * next change. */
const struct tracker_agent *tracker_agents_at(const struct tracker_agents *a, size_t i);
/* The agent of that node name, or NULL. Borrowed as above. */
const struct tracker_agent *tracker_agents_find(const struct tracker_agents *a, const char *name);

uint64_t tracker_agents_timeout_ms(const struct tracker_agents *a);

#endif
