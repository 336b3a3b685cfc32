/* Which agents a job goes to (docs/protocol.md, "Selectors"): label
 * matches, named nodes, and an optional count or percentage of the agents
 * that match. Text form, as shoalctl and the config take it:
 *
 *     zone=eu-1,pool!=cpu,node=gpu-1,node=gpu-2,count=3
 *
 * Terms are comma-separated: KEY=VALUE (the agent has the label with that
 * value), KEY!=VALUE (it does not), node=NAME (its node name, the address
 * the tracker saw, or its mirror URL's host; several node terms are
 * alternatives), count=N (at most N agents), percent=P (at most P% of the
 * matching agents, rounded up). "", "all" and "*" select every agent.
 * "node", "count" and "percent" are therefore not usable as label keys.
 * The JSON form is {"labels":{...},"not_labels":{...},"nodes":[...],
 * "count":N,"percent":P}; a job request may give either form.
 *
 * When a count or percentage leaves some matching agents out, the ones
 * taken are picked by rendezvous hashing on the job id, so different jobs
 * spread over different agents and one job's choice is stable. Pure.
 */
#ifndef SHOAL_TRACKER_SELECTOR_H
#define SHOAL_TRACKER_SELECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "agents.h"

#define SELECTOR_TERMS_MAX 16
#define SELECTOR_NODES_MAX 256
#define SELECTOR_NODE_MAX 255 /* a name, an address or a host */
#define SELECTOR_COUNT_MAX TRACKER_AGENTS_MAX
#define SELECTOR_TEXT_MAX 4096

struct selector_term {
    char key[AGENT_LABEL_KEY_MAX + 1];
    char value[AGENT_LABEL_VALUE_MAX + 1];
    bool negate;
};

struct tracker_selector {
    size_t nterms;
    struct selector_term terms[SELECTOR_TERMS_MAX];
    size_t nnodes;
    char nodes[SELECTOR_NODES_MAX][SELECTOR_NODE_MAX + 1];
    uint32_t count;   /* 0 = no limit */
    uint32_t percent; /* 0 = no limit, else 1..100 */
};

/* Parses the text form into out. 0, or SHOAL_EPARSE with a one-line reason
 * in err ("selector: count=x: ..."). */
int tracker_selector_parse(const char *text, struct tracker_selector *out, char *err,
                           size_t errlen);

/* Reads a selector given as text (a JSON string), as an object, or absent
 * (NULL or null: every agent). 0 or SHOAL_EPARSE as above. */
int tracker_selector_from_json(json_t *v, struct tracker_selector *out, char *err, size_t errlen);

/* The text form of s ("all" for the empty selector). */
void tracker_selector_format(const struct tracker_selector *s, char *out, size_t outlen);

/* Narrows dst by src: src's terms and nodes are added (ANDed with dst's
 * terms; nodes only when dst has none), and the smaller count and percent
 * win. Used to restrict a caller's selector to a configured base set.
 * 0, or SHOAL_ETOOBIG when the terms do not fit. */
int tracker_selector_and(struct tracker_selector *dst, const struct tracker_selector *src);

/* Whether the agent matches the terms and nodes (count and percent aside). */
bool tracker_selector_matches(const struct tracker_selector *s, const struct tracker_agent *a);

/* The agents of inv the selector picks for the job salt (its id): every
 * match, or the count/percent of them with the highest rendezvous scores.
 * Writes up to max pointers (borrowed from inv) into out, in inventory
 * order; returns how many. */
size_t tracker_selector_pick(const struct tracker_selector *s, const struct tracker_agents *inv,
                             uint64_t salt, const struct tracker_agent **out, size_t max);

#endif
