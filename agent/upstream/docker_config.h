/* Registry credentials in the docker client's format: ~/.docker/config.json,
 * the `.dockerconfigjson` key of a Kubernetes Secret of type
 * kubernetes.io/dockerconfigjson, or the legacy `.dockercfg` (the same
 * entries without the "auths" wrapper).
 *
 *   {"auths": {"https://index.docker.io/v1/": {"auth": "<base64 user:password>"},
 *              "registry.example.com:5000": {"username": "u", "password": "p"},
 *              "myregistry.azurecr.io": {"username": "0000...", "identitytoken": "..."}}}
 *
 * A pure parser: text in, entries out. Keys are reduced to the registry
 * host they name (docker_config_host): scheme and path dropped, lower case,
 * Docker Hub's names (index.docker.io, registry-1.docker.io,
 * registry.hub.docker.com) all "docker.io". In an entry, "auth" wins over
 * "username"/"password"; "identitytoken" is an OAuth2 refresh token for the
 * registry's token service. "credsStore" and "credHelpers" name programs
 * the agent does not run: they are reported, not used.
 *
 * Entries that cannot be used (no credentials, an "auth" that is not
 * base64 of "user:password", control characters, values too long) are
 * skipped with a reason; a file that is not a JSON object, or whose
 * "auths" is not an object, is an error. Nothing here ever puts a secret
 * into a reason or an error message.
 */
#ifndef SHOAL_DOCKER_CONFIG_H
#define SHOAL_DOCKER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define DOCKER_CONFIG_FILE_MAX (1u << 20) /* bytes of one file */
#define DOCKER_CONFIG_ENTRIES_MAX 1024    /* entries of one file */
#define DOCKER_CONFIG_FIELD_MAX 16384     /* bytes of a username, password or token */
#define DOCKER_CONFIG_HOST_MAX 256

/* One registry's credentials. Strings owned (the secrets are wiped when
 * freed). username and password both set (Basic), and/or an
 * identity_token (then username, if set, is only informative). */
struct docker_auth {
    char host[DOCKER_CONFIG_HOST_MAX]; /* docker_config_host() of the key */
    char *username;
    char *password;
    char *identity_token; /* or NULL */
};

struct docker_config {
    struct docker_auth *entries; /* in file order, one per host (the first key wins) */
    size_t n;
    bool helpers; /* "credsStore" or "credHelpers" present (not used) */
};

/* Parses len bytes of text into out (zeroed first; free with
 * docker_config_dispose in every case). Each skipped entry calls
 * on_skip(arg, key, reason) when on_skip is set (key sanitised to
 * printable ASCII). 0, SHOAL_EPARSE (err says why: not JSON, not an
 * object, "auths" not an object), SHOAL_ETOOBIG (file or entry count over
 * its limit) or -ENOMEM. */
int docker_config_parse(const char *text, size_t len, struct docker_config *out,
                        void (*on_skip)(void *arg, const char *key, const char *reason), void *arg,
                        char *err, size_t errlen);

/* Frees and wipes what docker_config_parse stored. */
void docker_config_dispose(struct docker_config *c);

/* The registry host a config key or an upstream URL names, into out:
 * "https://index.docker.io/v1/" -> "docker.io", "http://127.0.0.1:5000" ->
 * "127.0.0.1:5000", "Registry.Example.com/path" -> "registry.example.com".
 * 0, or SHOAL_EPARSE when no host is left (or it does not fit). */
int docker_config_host(const char *key, char *out, size_t outlen);

/* The first entry for host (a docker_config_host() result), or NULL. */
const struct docker_auth *docker_config_find(const struct docker_config *c, const char *host);

#endif
