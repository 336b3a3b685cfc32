/* What an agent tells the tracker about itself when it registers and on
 * every heartbeat (docs/protocol.md, "POST /v1/agents"): its node name,
 * where its mirror and prewarm API answer, its peer address, its labels,
 * its version and how full its cache is. The one place the JSON keys and
 * limits are written, with the encoder (the agent) and the decoder (the
 * tracker); also the grammar of node names and labels, which the agent's
 * configuration and the tracker's selectors use.
 *
 * Pure module: no I/O.
 */
#ifndef SHOAL_AGENT_INFO_H
#define SHOAL_AGENT_INFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal/buf.h"

#define AGENT_INFO_PATH "/v1/agents"

#define AGENT_NAME_MAX 63        /* node names: [A-Za-z0-9][A-Za-z0-9._-]* */
#define AGENT_LABELS_MAX 16      /* labels per agent */
#define AGENT_LABEL_KEY_MAX 63   /* [A-Za-z0-9][A-Za-z0-9._/-]* */
#define AGENT_LABEL_VALUE_MAX 63 /* [A-Za-z0-9._-]*, may be empty */
#define AGENT_URL_MAX 255
#define AGENT_ADDR_MAX 300
#define AGENT_VERSION_MAX 63
#define AGENT_INFO_BODY_MAX 16384 /* largest registration body */

struct agent_label {
    char key[AGENT_LABEL_KEY_MAX + 1];
    char value[AGENT_LABEL_VALUE_MAX + 1];
};

/* One registration or heartbeat. */
struct agent_info {
    char name[AGENT_NAME_MAX + 1];
    char mirror_url[AGENT_URL_MAX + 1]; /* "http://10.0.0.5:5080": mirror and prewarm API */
    char peer_addr[AGENT_ADDR_MAX + 1]; /* "10.0.0.5:5081", "" without a swarm */
    char version[AGENT_VERSION_MAX + 1];
    size_t nlabels;
    struct agent_label labels[AGENT_LABELS_MAX];
    uint64_t cache_bytes;      /* bytes held in the blob cache */
    uint64_t cache_max_bytes;  /* cache-max-bytes */
    uint64_t cache_free_bytes; /* what the cache may still take under its limit */
    uint64_t blobs;            /* complete blobs cached */
    uint64_t prewarm_running;  /* prewarm jobs in progress */
};

/* Whether s is a valid node name. */
bool agent_name_valid(const char *s);
/* Whether k is a valid label key, v a valid label value. */
bool agent_label_key_valid(const char *k);
bool agent_label_value_valid(const char *v);

/* Parses "key=value,key=value" (blanks around items ignored; "" gives no
 * labels) into out[0..*n). A key may appear once. 0, or SHOAL_EPARSE with a
 * one-line reason in err. */
int agent_labels_parse(const char *text, struct agent_label *out, size_t *n, char *err,
                       size_t errlen);

/* The value of label key, or NULL. */
const char *agent_info_label(const struct agent_info *a, const char *key);

/* Appends the JSON of a to out. 0, SHOAL_EPARSE (a field a decoder would
 * refuse), or what buf_append returns. */
int agent_info_encode(const struct agent_info *a, struct buf *out);

/* Decodes a registration body. 0, or SHOAL_EPARSE with the field named in
 * err ("labels.zone: ..."). Unknown keys are ignored (newer agents). */
int agent_info_decode(const char *body, size_t len, struct agent_info *out, char *err,
                      size_t errlen);

#endif
