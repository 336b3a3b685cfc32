/* shoalctl's cluster commands: `agents`, `swarms`, `jobs [ID] [--watch]`
 * (the tracker's inventory, swarms and preheat jobs) and `status --agent
 * URL` (one agent's own view), each as a table or, with -o json, as the
 * JSON the daemon answered. Requests to the tracker are signed with the
 * secret of --cluster-secret-file. */
#ifndef SHOAL_CTL_CLUSTER_H
#define SHOAL_CTL_CLUSTER_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "ctl_http.h"

/* Options shared by the tracker commands. The defaults come from
 * SHOAL_TRACKER and SHOAL_CLUSTER_SECRET_FILE. */
struct ctl_common {
    const char *tracker; /* as given */
    char tracker_url[CTL_URL_MAX];
    const char *secret_file; /* NULL = no secret */
    bool json;               /* -o json */
    /* --tls-mode, --tls-ca, --tls-cert, --tls-key (defaults SHOAL_TLS_MODE,
     * ...): the cluster's TLS to the tracker (docs/protocol.md, "TLS") */
    const char *tls_mode;
    const char *tls_ca;
    const char *tls_cert;
    const char *tls_key;
};

/* getopt_long codes of the --tls-* options ({"tls-mode", required_argument,
 * NULL, CTL_OPT_TLS_MODE}, ...), outside any short option's range. */
enum ctl_tls_opt {
    CTL_OPT_TLS_MODE = 0x100,
    CTL_OPT_TLS_CA,
    CTL_OPT_TLS_CERT,
    CTL_OPT_TLS_KEY,
};

/* Fills c's defaults. */
void ctl_common_defaults(struct ctl_common *c);
/* Stores a --tls-* option's value (arg, borrowed from argv) when opt is one
 * of the CTL_OPT_TLS_* codes; false for any other opt. */
bool ctl_common_tls_opt(struct ctl_common *c, int opt, const char *arg);
/* Handles -o FORMAT; returns 0, or 2 after printing a usage error for cmd. */
int ctl_common_output(struct ctl_common *c, const char *cmd, const char *value);
/* Checks --tracker; 0, or 2 after a usage error. */
int ctl_common_tracker(struct ctl_common *c, const char *cmd);

/* Makes h use the cluster's TLS for the tracker when --tls-mode (or
 * SHOAL_TLS_MODE) says so. Call after ctl_http_init. 0, or 2 after printing
 * why for cmd. */
int ctl_common_tls(const struct ctl_common *c, struct ctl_http *h, const char *cmd);

/* A hint to print after the error of a tracker request that got resp
 * (" (is --cluster-secret-file the cluster's secret?)" after a 401, what
 * --tls-mode needs after a TLS failure); "" when there is none. */
const char *ctl_common_hint(const struct ctl_common *c, const struct ctl_response *resp);

/* GETs path from the tracker (signed) into *doc; 0, or 1 after printing
 * why on stderr. */
int ctl_tracker_get(struct ctl_http *h, const struct ctl_common *c, const char *path, json_t **doc);

/* Prints doc as indented JSON on stdout. */
void ctl_print_json(json_t *doc);

int ctl_agents_main(int argc, char **argv);
int ctl_swarms_main(int argc, char **argv);
int ctl_jobs_main(int argc, char **argv);
int ctl_status_main(int argc, char **argv);

void ctl_agents_usage(FILE *out);
void ctl_swarms_usage(FILE *out);
void ctl_jobs_usage(FILE *out);
void ctl_status_usage(FILE *out);

/* One job's text: a header line and a line per agent (jobs ID). */
void ctl_job_print(json_t *job, FILE *out);

#endif
