/* Harbor's and the registry's formats. See harbor.h. */
#include "harbor.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "shoal/error.h"
#include "shoal/image_ref.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return SHOAL_EPARSE;
}

/* obj[key] with Go's rule: the exact key, else one equal ignoring case. */
static json_t *iget(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    const char *k;
    json_t *val;
    if (v || !json_is_object(obj))
        return v;
    json_object_foreach(obj, k, val)
    {
        if (strcasecmp(k, key) == 0)
            return val;
    }
    return NULL;
}

static const char *istr(json_t *obj, const char *key)
{
    json_t *v = iget(obj, key);
    const char *s = json_string_value(v);
    return s && strlen(s) == json_string_length(v) ? s : NULL;
}

static json_t *load(const char *body, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = len ? json_loadb(body, len, 0, &jerr) : NULL;
    if (!json_is_object(root)) {
        if (root)
            fail(err, errlen, "the body is not a JSON object");
        else
            fail(err, errlen, "the body is not JSON: %s",
                 len ? shoal_one_line(jerr.text) : "empty");
        json_decref(root);
        return NULL;
    }
    return root;
}

void harbor_rfc3339(uint64_t wall_ms, char *out, size_t outlen)
{
    time_t s = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%03uZ", base, (unsigned)(wall_ms % 1000));
}

/* Splits "<scheme>://<host>/v2/<repo>/manifests/<reference>" (Dragonfly's
 * own reading of args.url). */
static int split_manifest_url(const char *url, char *host, size_t hostlen, char *repo,
                              size_t repolen, char *ref, size_t reflen)
{
    const char *p = strstr(url, "://");
    if (!p)
        return SHOAL_EPARSE;
    p += 3;
    const char *v2 = strstr(p, "/v2/");
    if (!v2 || v2 == p)
        return SHOAL_EPARSE;
    const char *r = v2 + 4;
    const char *m = NULL;
    for (const char *q = strstr(r, "/manifests/"); q; q = strstr(q + 1, "/manifests/"))
        m = q;
    if (!m || m == r)
        return SHOAL_EPARSE;
    const char *rf = m + strlen("/manifests/");
    size_t hl = (size_t)(v2 - p), rl = (size_t)(m - r), fl = strcspn(rf, "?#");
    if (hl >= hostlen || rl >= repolen || fl == 0 || fl >= reflen)
        return SHOAL_EPARSE;
    memcpy(host, p, hl);
    host[hl] = '\0';
    memcpy(repo, r, rl);
    repo[rl] = '\0';
    memcpy(ref, rf, fl);
    ref[fl] = '\0';
    return 0;
}

/* "host/repo:tag" or "host/repo@digest", checked to read back as that host
 * and repository (a host without '.', ':' or "localhost" would not). */
static int make_ref(const char *host, const char *repo, const char *ref, char *out, size_t outlen,
                    char *err, size_t errlen)
{
    bool digest = oci_reference_is_digest(ref, strlen(ref));
    int n = snprintf(out, outlen, "%s/%s%c%s", host, repo, digest ? '@' : ':', ref);
    struct image_ref r;
    char why[200];
    if (n < 0 || (size_t)n >= outlen)
        return fail(err, errlen, "the reference %s/%s is too long", host, repo);
    if (image_ref_parse(out, &r, why, sizeof(why)) < 0)
        return fail(err, errlen, "%s: %s", out, why);
    if (strcmp(r.host, host) != 0 || strcmp(r.repo, repo) != 0)
        return fail(err, errlen,
                    "registry host \"%s\" must contain a '.' or a ':' or be localhost, so that it "
                    "is told apart from a repository",
                    host);
    return 0;
}

static int credentials_json(json_t *args, struct buf *creds, char *err, size_t errlen)
{
    json_t *headers = iget(args, "headers");
    const char *authz = NULL;
    if (headers && !json_is_null(headers)) {
        if (!json_is_object(headers))
            return fail(err, errlen, "args.headers: expected an object of strings");
        authz = istr(headers, "Authorization");
    }
    const char *user = istr(args, "username");
    const char *pass = istr(args, "password");
    json_t *o = NULL;
    if (authz && authz[0])
        o = json_pack("{s:s}", "authorization", authz);
    else if (user && user[0] && pass && pass[0])
        o = json_pack("{s:s,s:s}", "username", user, "password", pass);
    if (!o)
        return 0;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        return -ENOMEM;
    int rc = buf_append(creds, s, strlen(s));
    memset(s, 0, strlen(s));
    free(s);
    return rc;
}

static int scope_selector(const char *scope, const struct harbor_scopes *scopes,
                          struct tracker_selector *sel, char *err, size_t errlen)
{
    *sel = scopes->base;
    if (!scope || !scope[0] || strcmp(scope, "single_seed_peer") == 0 ||
        strcmp(scope, "single_peer") == 0) {
        /* One agent gets it; the others then pull it from that one. */
        if (!sel->count || sel->count > 1)
            sel->count = 1;
        return 0;
    }
    if (strcmp(scope, "all_seed_peers") == 0)
        return tracker_selector_and(sel, &scopes->seed) < 0
                   ? fail(err, errlen, "the seed selector does not fit the base selector")
                   : 0;
    if (strcmp(scope, "all_peers") == 0)
        return 0;
    return fail(err, errlen,
                "args.scope \"%.40s\" is not single_seed_peer, single_peer, all_seed_peers or "
                "all_peers",
                scope);
}

static int selector_args(json_t *args, struct tracker_selector *sel, char *err, size_t errlen)
{
    json_t *ips = iget(args, "ips");
    if (ips && !json_is_null(ips)) {
        if (!json_is_array(ips))
            return fail(err, errlen, "args.ips: expected an array of addresses");
        sel->nnodes = 0;
        for (size_t i = 0; i < json_array_size(ips) && i < SELECTOR_NODES_MAX; i++) {
            const char *s = json_string_value(json_array_get(ips, i));
            if (!s || !s[0] || strlen(s) > SELECTOR_NODE_MAX)
                return fail(err, errlen, "args.ips[%zu]: expected an address", i);
            snprintf(sel->nodes[sel->nnodes++], SELECTOR_NODE_MAX + 1, "%s", s);
        }
    }
    json_t *count = iget(args, "count");
    if (json_is_integer(count) && json_integer_value(count) > 0)
        sel->count =
            (uint32_t)(json_integer_value(count) > SELECTOR_COUNT_MAX ? SELECTOR_COUNT_MAX
                                                                      : json_integer_value(count));
    json_t *pct = iget(args, "percentage");
    if (json_is_integer(pct) && json_integer_value(pct) > 0)
        sel->percent = (uint32_t)(json_integer_value(pct) > 100 ? 100 : json_integer_value(pct));
    return 0;
}

int harbor_df_decode(const char *body, size_t len, const struct harbor_scopes *scopes,
                     struct tracker_job_spec *spec, struct buf *creds, char *err, size_t errlen)
{
    char host[OCI_NAME_MAX + 1], repo[OCI_NAME_MAX + 1], ref[OCI_TAG_MAX + 140];
    int rc = SHOAL_EPARSE;

    memset(spec, 0, sizeof(*spec));
    json_t *root = load(body, len, err, errlen);
    if (!root)
        return SHOAL_EPARSE;
    const char *type = istr(root, "type");
    json_t *args = iget(root, "args");
    if (!type || strcmp(type, "preheat") != 0) {
        fail(err, errlen, "type \"%.40s\" is not \"preheat\"", type ? type : "");
        goto out;
    }
    if (!json_is_object(args)) {
        fail(err, errlen, "args: expected an object");
        goto out;
    }
    const char *atype = istr(args, "type");
    if (atype && strcmp(atype, "file") == 0) {
        fail(err, errlen, "args.type \"file\": shoal preheats OCI images and models only");
        rc = SHOAL_ENOT_FOUND;
        goto out;
    }
    if (!atype || (strcmp(atype, "image") != 0 && strcmp(atype, "cnai") != 0)) {
        fail(err, errlen, "args.type \"%.40s\" is not image or cnai", atype ? atype : "");
        goto out;
    }
    const char *url = istr(args, "url");
    if (!url || strlen(url) > TRACKER_JOB_URL_MAX ||
        split_manifest_url(url, host, sizeof(host), repo, sizeof(repo), ref, sizeof(ref)) < 0) {
        fail(err, errlen,
             "args.url \"%.200s\" is not <scheme>://<registry>/v2/<repository>/"
             "manifests/<tag or digest>",
             url ? url : "");
        goto out;
    }
    if (make_ref(host, repo, ref, spec->ref, sizeof(spec->ref), err, errlen) < 0)
        goto out;
    snprintf(spec->source, sizeof(spec->source), "dragonfly");
    snprintf(spec->source_url, sizeof(spec->source_url), "%s", url);
    const char *platform = istr(args, "platform");
    if (platform && platform[0]) {
        if (!manifest_platform_valid(platform)) {
            fail(err, errlen, "args.platform \"%.64s\" is not os/arch or os/arch/variant",
                 platform);
            goto out;
        }
        snprintf(spec->platforms[spec->nplatforms++], MANIFEST_PLATFORM_MAX + 1, "%s", platform);
    }
    const char *scope = istr(args, "scope");
    snprintf(spec->scope, sizeof(spec->scope), "%.31s", scope ? scope : "");
    if (scope_selector(scope, scopes, &spec->selector, err, errlen) < 0 ||
        selector_args(args, &spec->selector, err, errlen) < 0)
        goto out;
    json_t *cc = iget(args, "concurrent_count");
    if (json_is_integer(cc) && json_integer_value(cc) > 0)
        spec->max_concurrent =
            (uint32_t)(json_integer_value(cc) > 100000 ? 100000 : json_integer_value(cc));
    json_t *timeout = iget(args, "timeout"); /* a Go time.Duration: nanoseconds */
    if (json_is_integer(timeout) && json_integer_value(timeout) > 0) {
        uint64_t ms = (uint64_t)json_integer_value(timeout) / 1000000;
        spec->timeout_ms = ms < 1000 ? 1000 : ms;
    }
    rc = credentials_json(args, creds, err, errlen);
out:
    json_decref(root);
    return rc;
}

static json_t *task_json(const struct tracker_job *j, const struct tracker_task *t, bool failed)
{
    const char *url = j->spec.source_url[0] ? j->spec.source_url : j->spec.ref;
    if (failed)
        return json_pack("{s:s,s:s,s:s,s:s}", "url", url, "hostname", t->agent, "ip", t->ip,
                         "description", t->error);
    return json_pack("{s:s,s:s,s:s}", "url", url, "hostname", t->agent, "ip", t->ip);
}

json_t *harbor_df_job_json(const struct tracker_job *j)
{
    char created[40], updated[40], group[48];
    harbor_rfc3339(j->created_wall_ms, created, sizeof(created));
    harbor_rfc3339(tracker_job_wall_ms(j, j->updated_ms), updated, sizeof(updated));
    snprintf(group, sizeof(group), "shoal_job_%" PRIu64, j->id);
    const char *state = tracker_job_state_name(j->state);
    json_t *ok = json_array(), *bad = json_array();
    for (size_t i = 0; ok && bad && i < j->ntasks; i++) {
        const struct tracker_task *t = &j->tasks[i];
        if (t->state == TRACKER_TASK_SUCCEEDED)
            json_array_append_new(ok, task_json(j, t, false));
        else if (t->state == TRACKER_TASK_FAILED)
            json_array_append_new(bad, task_json(j, t, true));
    }
    if (!ok || !bad) {
        json_decref(ok);
        json_decref(bad);
        return NULL;
    }
    json_t *result =
        json_pack("{s:s,s:s,s:s,s:s,s:[{s:s,s:s,s:s,s:s,s:s,s:i,s:[{s:i,s:o,s:o}]}]}", "group_uuid",
                  group, "state", state, "created_at", created, "updated_at", updated, "job_states",
                  "task_uuid", group, "task_name", "preheat", "state", state, "error",
                  j->state == TRACKER_JOB_FAILURE ? j->error : "", "created_at", created, "ttl", 0,
                  "results", "scheduler_cluster_id", 1, "success_tasks", ok, "failure_tasks", bad);
    json_t *args =
        json_pack("{s:s,s:s,s:s}", "type", "image", "url",
                  j->spec.source_url[0] ? j->spec.source_url : j->spec.ref, "scope", j->spec.scope);
    return json_pack("{s:I,s:s,s:s,s:i,s:s,s:s,s:s,s:s,s:o,s:o,s:i,s:[],s:[{s:i,s:s}]}", "id",
                     (json_int_t)j->id, "created_at", created, "updated_at", updated, "is_del", 0,
                     "task_id", group, "bio", "", "type", "preheat", "state", state, "args", args,
                     "result", result, "user_id", 0, "seed_peer_clusters", "scheduler_clusters",
                     "id", 1, "name", "shoal");
}

int harbor_push_ref(const struct harbor_push *p, char *out, size_t outlen)
{
    int n = p->digest[0] ? snprintf(out, outlen, "%s/%s@%s", p->host, p->repo, p->digest)
                         : snprintf(out, outlen, "%s/%s:%s", p->host, p->repo, p->tag);
    return n < 0 || (size_t)n >= outlen ? SHOAL_ETOOBIG : 0;
}

static bool manifest_media_type(const char *mt)
{
    return mt &&
           (strcmp(mt, MANIFEST_MT_OCI_MANIFEST) == 0 || strcmp(mt, MANIFEST_MT_OCI_INDEX) == 0 ||
            strcmp(mt, MANIFEST_MT_DOCKER_MANIFEST) == 0 ||
            strcmp(mt, MANIFEST_MT_DOCKER_LIST) == 0 ||
            strcmp(mt, "application/vnd.docker.distribution.manifest.v2+prettyjws") == 0);
}

/* Fills p from a notification target; false when it is not a manifest push
 * that can be read. */
static bool push_from_target(json_t *target, struct harbor_push *p)
{
    char ref[OCI_TAG_MAX + 140];
    const char *url = istr(target, "url");
    const char *mt = istr(target, "mediaType");
    const char *repo = istr(target, "repository");
    const char *digest = istr(target, "digest");
    const char *tag = istr(target, "tag");
    memset(p, 0, sizeof(*p));
    /* A manifest: its URL says so (registries), or its media type does
     * (Harbor's Kraken driver always sends the docker manifest type). */
    if (!url || !strstr(url, "/manifests/")) {
        if (!manifest_media_type(mt) || (url && strstr(url, "/blobs/")))
            return false;
    }
    if (!url || split_manifest_url(url, p->host, sizeof(p->host), p->repo, sizeof(p->repo), ref,
                                   sizeof(ref)) < 0)
        return false;
    if (repo && repo[0] && strlen(repo) < sizeof(p->repo))
        snprintf(p->repo, sizeof(p->repo), "%s", repo);
    struct oci_digest d;
    if (digest && oci_digest_parse(digest, strlen(digest), &d) == 0)
        snprintf(p->digest, sizeof(p->digest), "%s", d.str);
    else if (oci_reference_is_digest(ref, strlen(ref)) &&
             oci_digest_parse(ref, strlen(ref), &d) == 0)
        snprintf(p->digest, sizeof(p->digest), "%s", d.str);
    if (tag && oci_tag_valid(tag, strlen(tag)))
        snprintf(p->tag, sizeof(p->tag), "%s", tag);
    else if (!oci_reference_is_digest(ref, strlen(ref)) && oci_tag_valid(ref, strlen(ref)) &&
             strlen(ref) < sizeof(p->tag))
        memcpy(p->tag, ref, strlen(ref) + 1);
    if (!oci_name_valid(p->repo, strlen(p->repo)) || (!p->digest[0] && !p->tag[0]))
        return false;
    return true;
}

int harbor_notifications_decode(const char *body, size_t len, struct harbor_push *out, size_t max,
                                size_t *n, size_t *ignored, char *err, size_t errlen)
{
    *n = 0;
    *ignored = 0;
    json_t *root = load(body, len, err, errlen);
    if (!root)
        return SHOAL_EPARSE;
    json_t *events = iget(root, "events");
    if (events && !json_is_null(events) && !json_is_array(events)) {
        json_decref(root);
        return fail(err, errlen, "events: expected an array");
    }
    for (size_t i = 0; i < json_array_size(events); i++) {
        json_t *ev = json_array_get(events, i);
        const char *action = istr(ev, "action");
        json_t *target = iget(ev, "target");
        if (!action || strcmp(action, "push") != 0 || !json_is_object(target) || *n >= max ||
            !push_from_target(target, &out[*n])) {
            (*ignored)++;
            continue;
        }
        (*n)++;
    }
    json_decref(root);
    return 0;
}

bool harbor_notifications_from_kraken(const char *body, size_t len)
{
    json_t *root = len ? json_loadb(body, len, 0, NULL) : NULL;
    bool kraken = json_object_get(root, "Events") != NULL;
    json_decref(root);
    return kraken;
}

/* "host/project/repo:tag" or "...@sha256:..." (Harbor's resource_url, no
 * scheme) into p; repo_full_name (may be NULL) wins for the repository. */
static bool push_from_resource(json_t *res, const char *repo_full, struct harbor_push *p)
{
    const char *rurl = istr(res, "resource_url");
    const char *digest = istr(res, "digest");
    const char *tag = istr(res, "tag");
    memset(p, 0, sizeof(*p));
    if (!rurl)
        return false;
    const char *s = strstr(rurl, "://");
    s = s ? s + 3 : rurl;
    const char *slash = strchr(s, '/');
    if (!slash || (size_t)(slash - s) >= sizeof(p->host))
        return false;
    memcpy(p->host, s, (size_t)(slash - s));
    p->host[slash - s] = '\0';
    const char *rest = slash + 1;
    const char *at = strchr(rest, '@');
    const char *colon = at ? NULL : strrchr(rest, ':');
    size_t rl = at ? (size_t)(at - rest) : colon ? (size_t)(colon - rest) : strlen(rest);
    if (rl >= sizeof(p->repo))
        return false;
    memcpy(p->repo, rest, rl);
    p->repo[rl] = '\0';
    if (repo_full && repo_full[0] && strlen(repo_full) < sizeof(p->repo))
        snprintf(p->repo, sizeof(p->repo), "%s", repo_full);
    struct oci_digest d;
    if (digest && oci_digest_parse(digest, strlen(digest), &d) == 0)
        snprintf(p->digest, sizeof(p->digest), "%s", d.str);
    else if (at && oci_digest_parse(at + 1, strlen(at + 1), &d) == 0)
        snprintf(p->digest, sizeof(p->digest), "%s", d.str);
    /* Harbor puts the digest in "tag" when the push had no tag. */
    if (tag && oci_tag_valid(tag, strlen(tag)))
        snprintf(p->tag, sizeof(p->tag), "%s", tag);
    else if (colon && oci_tag_valid(colon + 1, strlen(colon + 1)))
        snprintf(p->tag, sizeof(p->tag), "%s", colon + 1);
    return oci_name_valid(p->repo, strlen(p->repo)) && (p->digest[0] || p->tag[0]);
}

int harbor_webhook_decode(const char *body, size_t len, const char *content_type,
                          struct harbor_push *out, size_t max, size_t *n, char *event,
                          size_t eventlen, char *err, size_t errlen)
{
    *n = 0;
    event[0] = '\0';
    json_t *root = load(body, len, err, errlen);
    if (!root)
        return SHOAL_EPARSE;
    bool ce =
        (content_type && strncasecmp(content_type, "application/cloudevents+json", 28) == 0) ||
        json_object_get(root, "specversion") != NULL;
    const char *type = json_string_value(json_object_get(root, "type"));
    snprintf(event, eventlen, "%s", type ? type : "");
    bool push = type && (ce ? strcmp(type, "harbor.artifact.pushed") == 0
                            : strcmp(type, "PUSH_ARTIFACT") == 0);
    json_t *data = json_object_get(root, ce ? "data" : "event_data");
    if (push && !json_is_object(data)) {
        json_decref(root);
        return fail(err, errlen, "%s: expected an object", ce ? "data" : "event_data");
    }
    if (push) {
        json_t *res = json_object_get(data, "resources");
        const char *full = json_string_value(
            json_object_get(json_object_get(data, "repository"), "repo_full_name"));
        for (size_t i = 0; i < json_array_size(res) && *n < max; i++) {
            if (push_from_resource(json_array_get(res, i), full, &out[*n]))
                (*n)++;
        }
    }
    json_decref(root);
    return 0;
}
