/* The node's registry credentials: what containerd would have had from
 * imagePullSecrets (it never forwards them to a mirror), read by the agent
 * itself from
 *   - docker-config: a docker config.json or a mounted .dockerconfigjson,
 *   - pull-secrets-dir: a directory of such files, each file directly in it
 *     or one level down (a Kubernetes Secret mounted as a directory holds
 *     `.dockerconfigjson`; names starting with ".." are the mount's own
 *     bookkeeping and are skipped),
 * in that order; for a registry named in several, the first wins. The
 * format is docker_config.h.
 *
 * Reloaded on SIGHUP (node_creds_reload), when a watched directory changes
 * (inotify through uv_fs_event, debounced) and every check interval. A
 * reload reads everything anew; if any file cannot be read or parsed, the
 * credentials in use stay as they were and the failure is logged and
 * counted. Requests in flight keep what they sent; only new requests and
 * new attempts see the new credentials.
 *
 * Lookups (node_creds_find) match an upstream's URL host (where the
 * credentials would go, never the name a client used) reduced the same way
 * as the keys: scheme, path and case ignored, Docker Hub's names as one.
 *
 * Never logged: usernames, passwords, tokens. Log lines name files, hosts
 * and the kind of credential only.
 */
#ifndef SHOAL_NODE_CREDS_H
#define SHOAL_NODE_CREDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct node_creds;

struct node_creds_config {
    const char *docker_config; /* file, or NULL */
    const char *secrets_dir;   /* directory, or NULL */
    /* More files whose change counts as a change of credentials (the
     * password-file of upstreams): watched and fingerprinted, not parsed.
     * NULL-terminated, may be NULL; copied. */
    const char *const *watch_files;
    uint64_t check_interval_ms; /* re-read this often anyway; 0 = only on events and SIGHUP */
    /* After a reload of the module's own (a file event or the periodic
     * check) that changed anything (the credentials, or one of the
     * watch_files): the caller re-reads its own files and drops the tokens
     * fetched with what changed. node_creds_reload reports instead. */
    void (*on_change)(void *arg);
    void *arg;
};

/* Credentials for one registry, borrowed from the module until the next
 * reload (which only ever runs in a loop callback of its own, or in
 * node_creds_reload). username and password both set for Basic; an
 * identity_token (an OAuth2 refresh token) instead, or as well. */
struct node_cred {
    const char *username;
    const char *password;
    const char *identity_token;
    const char *source; /* the file it came from */
};

struct node_creds_stats {
    uint64_t entries;       /* registries with credentials */
    uint64_t files;         /* files read */
    uint64_t reloads;       /* reloads that read everything (changed or not) */
    uint64_t reload_errors; /* reloads that kept the previous credentials */
    uint64_t changes;       /* reloads that changed something */
    bool last_ok;           /* the latest reload succeeded */
};

/* Loads the files once and starts watching. Files that do not exist yet
 * are fine (no credentials from them, a warning); a file that exists but
 * cannot be read or parsed fails with SHOAL_ECONFIG and a message in err
 * naming it. loop is borrowed. */
int node_creds_create(uv_loop_t *loop, const struct node_creds_config *cfg, struct node_creds **out,
                      char *err, size_t errlen);

/* Stops watching and frees the module once its handles have closed (run the
 * loop). NULL-safe. Nothing may call node_creds_find afterwards. */
void node_creds_destroy(struct node_creds *nc);

/* Reads everything again now (why goes to the log: "SIGHUP"). 1 when
 * something changed (on_change is not called: the caller acts on it), 0
 * when nothing did, a negative code when a file could not be used (the
 * previous credentials stay). */
int node_creds_reload(struct node_creds *nc, const char *why);

/* The credentials for the host of url ("https://registry-1.docker.io",
 * "http://127.0.0.1:5000"), if any. */
bool node_creds_find(const struct node_creds *nc, const char *url, struct node_cred *out);

const struct node_creds_stats *node_creds_stats(const struct node_creds *nc);

#endif
