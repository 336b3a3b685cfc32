/* `shoalctl bench`. See ctl_bench.h. */
#define _GNU_SOURCE /* explicit_bzero, timegm */
#include "ctl_bench.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl_job.h"
#include "ctl_registry.h"
#include "ctl_render.h"
#include "shoal/config.h"
#include "shoal/error.h"
#include "shoal/hash.h"
#include "shoal/image_ref.h"
#include "shoal/manifest.h"

#define CHUNK (1u << 20)
#define EMPTY_MT "application/vnd.oci.empty.v1+json"
#define BENCH_ARTIFACT "application/vnd.shoal.bench.v1"

double ctl_bench_tmin_ms(uint64_t size, size_t n, double u_s, double u)
{
    double f = (double)size, t = 0;
    if (u_s > 0 && f / u_s > t)
        t = f / u_s;
    if (u > 0 && f / u > t)
        t = f / u;
    if (u_s + (double)n * u > 0 && (double)n * f / (u_s + (double)n * u) > t)
        t = (double)n * f / (u_s + (double)n * u);
    return t * 1000.0;
}

uint64_t ctl_bench_quantile(const uint64_t *sorted, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)ceil(q * (double)n);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

int ctl_bench_parse_rate(const char *s, double *out)
{
    char num[64];
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= sizeof(num))
        return SHOAL_EPARSE;
    memcpy(num, s, n + 1);
    /* Bits per second: "400Mbit", "1Gbit", "10Gbps", "100kbit". */
    static const struct {
        const char *suffix;
        double mult;
    } bits[] = {{"kbit", 1e3}, {"mbit", 1e6}, {"gbit", 1e9}, {"kbps", 1e3},
                {"mbps", 1e6}, {"gbps", 1e9}, {"bit", 1},    {"bps", 1}};
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
        size_t sl = strlen(bits[i].suffix);
        if (n > sl && strcasecmp(num + n - sl, bits[i].suffix) == 0) {
            num[n - sl] = '\0';
            char *end;
            double v = strtod(num, &end);
            if (end == num || *end || v <= 0)
                return SHOAL_EPARSE;
            *out = v * bits[i].mult / 8.0;
            return 0;
        }
    }
    /* A size per second, with an optional "/s". */
    if (n > 2 && strcmp(num + n - 2, "/s") == 0)
        num[n - 2] = '\0';
    uint64_t b;
    if (config_parse_size(num, &b) < 0 || b == 0)
        return SHOAL_EPARSE;
    *out = (double)b;
    return 0;
}

/* --- the run --- */

struct bench {
    struct ctl_job_args job;
    const char *push;
    struct image_ref target;
    uint64_t size;
    bool plain_http, keep;
    double link_rate, upstream_rate; /* 0 = not given */
    const char *plot;
    const char *tmp_dir;
    struct ctl_http h;
    struct ctl_registry reg;
    char path[4096];
    int fd;
    char digest[OCI_TAG_MAX + 140];
    char config_digest[OCI_TAG_MAX + 140];
    char manifest_digest[OCI_TAG_MAX + 140];
    char tag[64];
    uint64_t push_ms;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "shoalctl bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    return 1;
}

/* Writes size random bytes to a temp file, hashing them on the way. */
static int make_blob(struct bench *b)
{
    char *chunk = malloc(CHUNK);
    struct hash_ctx hc;
    char hex[129];
    snprintf(b->path, sizeof(b->path), "%s/shoal-bench-XXXXXX", b->tmp_dir);
    b->fd = mkstemp(b->path);
    if (b->fd < 0 || !chunk || hash_init(&hc, OCI_DIGEST_SHA256) < 0) {
        free(chunk);
        return fail("cannot create a temp file in %s: %s", b->tmp_dir, strerror(errno));
    }
    unlink(b->path); /* gone with the descriptor, whatever happens */
    for (uint64_t left = b->size; left > 0;) {
        size_t n = left < CHUNK ? (size_t)left : CHUNK;
        for (size_t off = 0; off < n;) {
            ssize_t r = getrandom(chunk + off, n - off, 0);
            if (r <= 0) {
                free(chunk);
                hash_dispose(&hc);
                return fail("no randomness: %s", strerror(errno));
            }
            off += (size_t)r;
        }
        hash_update(&hc, chunk, n);
        if (write(b->fd, chunk, n) != (ssize_t)n) {
            free(chunk);
            hash_dispose(&hc);
            return fail("cannot write the blob (disk full?): %s", strerror(errno));
        }
        left -= n;
    }
    hash_final_hex(&hc, hex);
    hash_dispose(&hc);
    free(chunk);
    snprintf(b->digest, sizeof(b->digest), "sha256:%s", hex);
    return 0;
}

/* POST an upload, then PUT the blob (from the fd, or body) under digest. */
static int upload(struct bench *b, const char *digest, const char *body, size_t len, int fd,
                  uint64_t flen)
{
    char path[1024], loc[2048], url[4096], why[600];
    struct ctl_response resp;
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", b->target.repo);
    struct ctl_request req = {.method = "POST", .url = path, .body = "", .body_len = 0};
    ctl_registry_do(&b->reg, &req, &resp);
    if (resp.rc < 0 || resp.status != 202 ||
        !ctl_response_header(&resp, "Location", loc, sizeof(loc))) {
        ctl_response_error(&resp, why, sizeof(why));
        ctl_response_dispose(&resp);
        return fail("cannot start an upload to %s/%s: %s", b->target.host, b->target.repo, why);
    }
    ctl_response_dispose(&resp);
    if (loc[0] == '/')
        snprintf(url, sizeof(url), "%s%s%cdigest=%s", b->reg.base, loc,
                 strchr(loc, '?') ? '&' : '?', digest);
    else
        snprintf(url, sizeof(url), "%s%cdigest=%s", loc, strchr(loc, '?') ? '&' : '?', digest);
    static const char *const headers[] = {"Content-Type: application/octet-stream", NULL};
    struct ctl_request put = {.method = "PUT",
                              .url = url,
                              .body = body,
                              .body_len = len,
                              .upload_fd = fd,
                              .upload_len = flen,
                              .headers = headers,
                              .timeout_s = 120};
    ctl_registry_do(&b->reg, &put, &resp);
    int st = resp.rc == 0 && resp.status == 201 ? 0 : 1;
    if (st) {
        ctl_response_error(&resp, why, sizeof(why));
        fail("cannot upload %s: %s", digest, why);
    }
    ctl_response_dispose(&resp);
    return st;
}

static int push(struct bench *b)
{
    static const char empty[] = "{}";
    char hex[129], path[1024], why[600];
    struct hash_ctx hc;
    uint64_t t0 = mono_ms();
    if (hash_init(&hc, OCI_DIGEST_SHA256) < 0)
        return fail("out of memory");
    hash_update(&hc, empty, 2);
    hash_final_hex(&hc, hex);
    hash_dispose(&hc);
    snprintf(b->config_digest, sizeof(b->config_digest), "sha256:%s", hex);
    if (upload(b, b->digest, NULL, 0, b->fd, b->size) ||
        upload(b, b->config_digest, empty, 2, -1, 0))
        return 1;
    snprintf(b->tag, sizeof(b->tag), "shoal-bench-%lld", (long long)time(NULL));
    json_t *m = json_pack(
        "{s:i,s:s,s:s,s:{s:s,s:s,s:i},s:[{s:s,s:s,s:I,s:{s:s}}],s:{s:s}}", "schemaVersion", 2,
        "mediaType", MANIFEST_MT_OCI_MANIFEST, "artifactType", BENCH_ARTIFACT, "config",
        "mediaType", EMPTY_MT, "digest", b->config_digest, "size", 2, "layers", "mediaType",
        "application/octet-stream", "digest", b->digest, "size", (json_int_t)b->size, "annotations",
        "org.opencontainers.image.title", "shoal-bench.bin", "annotations",
        "org.opencontainers.image.description", "shoalctl bench payload; safe to delete");
    char *raw = m ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    if (!raw)
        return fail("out of memory");
    if (hash_init(&hc, OCI_DIGEST_SHA256) < 0) {
        free(raw);
        return fail("out of memory");
    }
    hash_update(&hc, raw, strlen(raw));
    hash_final_hex(&hc, hex);
    hash_dispose(&hc);
    snprintf(b->manifest_digest, sizeof(b->manifest_digest), "sha256:%s", hex);
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", b->target.repo, b->tag);
    static const char *const headers[] = {"Content-Type: " MANIFEST_MT_OCI_MANIFEST, NULL};
    struct ctl_request req = {
        .method = "PUT", .url = path, .body = raw, .body_len = strlen(raw), .headers = headers};
    struct ctl_response resp;
    ctl_registry_do(&b->reg, &req, &resp);
    free(raw);
    int st = resp.rc == 0 && resp.status == 201 ? 0 : 1;
    if (st) {
        ctl_response_error(&resp, why, sizeof(why));
        fail("cannot push the manifest: %s", why);
    }
    ctl_response_dispose(&resp);
    b->push_ms = mono_ms() - t0;
    return st;
}

/* Deletes the manifest and the payload blob where the registry allows it. */
static bool cleanup(struct bench *b, char *note, size_t notelen)
{
    char path[1024], why[600];
    struct ctl_response resp;
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", b->target.repo, b->manifest_digest);
    struct ctl_request req = {.method = "DELETE", .url = path};
    ctl_registry_do(&b->reg, &req, &resp);
    bool ok = resp.rc == 0 && resp.status == 202;
    if (!ok) {
        ctl_response_error(&resp, why, sizeof(why));
        snprintf(note, notelen, "the registry did not delete the artifact (%s); it stays as %s:%s",
                 why, b->push, b->tag);
    }
    ctl_response_dispose(&resp);
    if (ok) {
        /* The empty config may serve other artifacts: only the payload goes. */
        snprintf(path, sizeof(path), "/v2/%s/blobs/%s", b->target.repo, b->digest);
        struct ctl_request breq = {.method = "DELETE", .url = path};
        ctl_registry_do(&b->reg, &breq, &resp);
        ctl_response_dispose(&resp);
        snprintf(note, notelen, "deleted %s:%s", b->push, b->tag);
    }
    return ok;
}

/* --- metrics of the agents --- */

static double metric_sum(const char *text, const char *name)
{
    double sum = 0;
    size_t nl = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, name, nl) == 0 && (p[nl] == ' ' || p[nl] == '{')) {
            const char *v = strchr(p, ' ');
            if (v)
                sum += strtod(v + 1, NULL);
        }
    }
    return sum;
}

/* agent name -> upstream bytes so far */
static json_t *upstream_bytes(struct ctl_http *h, json_t *agents)
{
    json_t *out = json_object();
    for (size_t i = 0; out && i < json_array_size(agents); i++) {
        json_t *a = json_array_get(agents, i);
        char url[1200];
        snprintf(url, sizeof(url), "%s/metrics",
                 json_string_value(json_object_get(a, "mirror_url")));
        struct ctl_request req = {.url = url, .timeout_s = 10};
        struct ctl_response resp;
        ctl_http_do(h, &req, &resp);
        if (resp.rc == 0 && resp.status == 200)
            json_object_set_new(
                out, json_string_value(json_object_get(a, "name")),
                json_real(metric_sum(resp.body.data, "shoal_upstream_bytes_total")));
        ctl_response_dispose(&resp);
    }
    return out;
}

static uint64_t rfc3339_ms(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!end)
        return 0;
    uint64_t ms = (uint64_t)timegm(&tm) * 1000;
    if (*end == '.')
        ms += (uint64_t)strtoul(end + 1, NULL, 10);
    return ms;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void write_svg(const char *path, const uint64_t *t, size_t n, double tmin_ms,
                      const char *title)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "shoalctl bench: cannot write %s: %s\n", path, strerror(errno));
        return;
    }
    double W = 640, H = 400, L = 60, R = 20, T = 40, B = 50;
    double xmax = (double)(n ? t[n - 1] : 1);
    if (tmin_ms > xmax)
        xmax = tmin_ms;
    xmax *= 1.05;
    if (xmax <= 0)
        xmax = 1;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n",
            W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"24\" font-size=\"14\">%s</text>\n", L, title);
    fprintf(f,
            "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n"
            "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n",
            L, H - B, W - R, H - B, L, T, L, H - B);
    for (int i = 0; i <= 4; i++) {
        double x = L + (W - L - R) * i / 4, y = H - B - (H - T - B) * i / 4;
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%.1fs</text>\n", x,
                H - B + 18, xmax * i / 4 / 1000.0);
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%d%%</text>\n", L - 6, y + 4,
                i * 25);
    }
    fprintf(f,
            "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">time since the job "
            "started</text>\n",
            L + (W - L - R) / 2, H - 10);
    fprintf(f, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"%.1f,%.1f",
            L, H - B);
    for (size_t i = 0; i < n; i++) {
        double x = L + (W - L - R) * (double)t[i] / xmax;
        double y0 = H - B - (H - T - B) * (double)i / (double)n;
        double y1 = H - B - (H - T - B) * (double)(i + 1) / (double)n;
        fprintf(f, " %.1f,%.1f %.1f,%.1f", x, y0, x, y1);
    }
    fprintf(f, "\"/>\n");
    if (tmin_ms > 0) {
        double x = L + (W - L - R) * tmin_ms / xmax;
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#d62728\" "
                "stroke-dasharray=\"4 3\"/>\n<text x=\"%.1f\" y=\"%.0f\" "
                "fill=\"#d62728\">T_min</text>\n",
                x, T, x, H - B, x + 4, T + 12);
    }
    fprintf(f, "</svg>\n");
    fclose(f);
}

static void ascii_plot(const uint64_t *t, size_t n, double tmin_ms)
{
    double xmax = (double)(n ? t[n - 1] : 1);
    if (tmin_ms > xmax)
        xmax = tmin_ms;
    if (xmax <= 0)
        xmax = 1;
    printf("completion time per node (%zu nodes; | marks T_min)\n", n);
    for (size_t i = 0; i < n; i++) {
        char bar[61], took[32];
        size_t w = (size_t)(60.0 * (double)t[i] / xmax);
        size_t tm = (size_t)(60.0 * tmin_ms / xmax);
        for (size_t k = 0; k < 60; k++)
            bar[k] = k < w ? '#' : (tmin_ms > 0 && k == tm ? '|' : ' ');
        bar[60] = '\0';
        ctl_render_duration(t[i], took, sizeof(took));
        printf("  %3zu %s %s\n", i + 1, bar, took);
    }
}

static int report(struct bench *b, json_t *job, json_t *before, json_t *after, bool deleted,
                  const char *note)
{
    json_t *tasks = json_object_get(job, "tasks");
    size_t n = json_array_size(tasks), ok = 0;
    uint64_t *t = calloc(n ? n : 1, sizeof(*t));
    uint64_t created = rfc3339_ms(json_string_value(json_object_get(job, "created_at")));
    double up = 0, fastest = 0;
    json_t *per = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *task = json_array_get(tasks, i);
        const char *name = json_string_value(json_object_get(task, "agent"));
        bool good = strcmp(json_string_value(json_object_get(task, "state")), "succeeded") == 0;
        uint64_t end = rfc3339_ms(json_string_value(json_object_get(task, "ended_at")));
        uint64_t done = end > created ? end - created : 0;
        uint64_t dur = (uint64_t)json_integer_value(json_object_get(task, "duration_ms"));
        if (good) {
            t[ok++] = done;
            if (dur > 0 && (double)b->size * 1000.0 / (double)dur > fastest)
                fastest = (double)b->size * 1000.0 / (double)dur;
        }
        up += json_real_value(json_object_get(after, name)) -
              json_real_value(json_object_get(before, name));
        json_array_append_new(per, json_pack("{s:s,s:s,s:I}", "agent", name, "state",
                                             json_string_value(json_object_get(task, "state")),
                                             "completion_ms", (json_int_t)done));
    }
    qsort(t, ok, sizeof(*t), cmp_u64);
    double u = b->link_rate > 0 ? b->link_rate : fastest;
    double us = b->upstream_rate > 0 ? b->upstream_rate : u;
    double tmin = ctl_bench_tmin_ms(b->size, n, us, u);
    uint64_t last = ok ? t[ok - 1] : 0;
    double tput = last ? (double)b->size * (double)ok * 1000.0 / (double)last : 0;
    const char *basis = b->link_rate > 0 ? "given link rates" : "highest rate observed";
    json_t *doc = json_pack(
        "{s:s,s:s,s:I,s:I,s:I,s:s,s:I,s:I,s:{s:I,s:I,s:I,s:I},s:f,s:f,s:f,s:f,s:s,s:f,s:o,s:b,"
        "s:s}",
        "ref", json_string_value(json_object_get(job, "ref")), "digest", b->digest, "size",
        (json_int_t)b->size, "push_ms", (json_int_t)b->push_ms, "job",
        (json_int_t)json_integer_value(json_object_get(job, "id")), "state",
        json_string_value(json_object_get(job, "state")), "agents", (json_int_t)n, "succeeded",
        (json_int_t)ok, "completion_ms", "first", (json_int_t)(ok ? t[0] : 0), "median",
        (json_int_t)ctl_bench_quantile(t, ok, 0.5), "p90",
        (json_int_t)ctl_bench_quantile(t, ok, 0.9), "last", (json_int_t)last,
        "throughput_bytes_per_s", tput, "upstream_bytes", up, "upstream_ratio",
        b->size ? up / (double)b->size : 0.0, "t_min_ms", tmin, "t_min_basis", basis,
        "last_over_t_min", tmin > 0 ? (double)last / tmin : 0.0, "per_agent", per, "deleted",
        deleted, "note", note);
    if (b->plot)
        write_svg(b->plot, t, ok, tmin, "shoal bench: nodes complete over time");
    if (b->job.common.json) {
        ctl_print_json(doc);
    } else {
        char size[32], a[32], m[32], p90[32], l[32], tm[32], rate[32];
        ctl_render_bytes(b->size, size, sizeof(size));
        ctl_render_duration(ok ? t[0] : 0, a, sizeof(a));
        ctl_render_duration(ctl_bench_quantile(t, ok, 0.5), m, sizeof(m));
        ctl_render_duration(ctl_bench_quantile(t, ok, 0.9), p90, sizeof(p90));
        ctl_render_duration(last, l, sizeof(l));
        ctl_render_duration((uint64_t)tmin, tm, sizeof(tm));
        ctl_render_bytes((uint64_t)tput, rate, sizeof(rate));
        printf("bench %s (%s) to %zu node%s: %s\n", b->push, size, n, n == 1 ? "" : "s",
               json_string_value(json_object_get(job, "state")));
        printf("  completion   first %s, median %s, p90 %s, last %s (%zu of %zu)\n", a, m, p90, l,
               ok, n);
        printf("  throughput   %s/s aggregate\n", rate);
        printf("  upstream     %.2f x the size (%.0f bytes)\n",
               b->size ? up / (double)b->size : 0.0, up);
        printf("  T_min        %s (%s); last / T_min = %.2f\n", tm, basis,
               tmin > 0 ? (double)last / tmin : 0.0);
        ascii_plot(t, ok, tmin);
        if (b->plot)
            printf("  plot         %s\n", b->plot);
        printf("  %s\n", note);
    }
    json_decref(doc);
    free(t);
    return ok == n && n > 0 ? 0 : 1;
}

void ctl_bench_usage(FILE *out)
{
    fprintf(out,
            "Usage: shoalctl bench --tracker URL --push REGISTRY/REPO [--size SIZE]\n"
            "                      [--selector SEL] [--link-rate RATE] [--upstream-rate RATE]\n"
            "                      [--plot FILE.svg] [options]\n"
            "\n"
            "Pushes a random blob of SIZE as an OCI artifact to REGISTRY/REPO, warms it on the\n"
            "agents SEL picks through a cluster job, and reports per-node completion (first,\n"
            "median, p90, last), aggregate throughput, the bytes fetched from upstream over\n"
            "the size, and the fluid lower bound T_min = max(F/u_s, F/u, N*F/(u_s + N*u)),\n"
            "then deletes the artifact where the registry allows it.\n"
            "\n"
            "  -T, --tracker URL        the tracker (default $SHOAL_TRACKER)\n"
            "  -p, --push REGISTRY/REPO where to push the payload\n"
            "  -z, --size SIZE          payload size, e.g. 512MiB, 4GiB (default 1GiB)\n"
            "  -S, --selector SEL       which agents (default: all)\n"
            "  -c, --max-concurrent N   start at most N agents at once\n"
            "  -l, --link-rate RATE     each node's link, e.g. 1Gbit, 100MiB (default: the\n"
            "                           highest rate an agent achieved)\n"
            "  -U, --upstream-rate RATE the registry's rate (default: the link rate)\n"
            "  -g, --plot FILE          write the completion-time plot as SVG\n"
            "  -H, --plain-http         push over http://\n"
            "  -u, --username USER      registry credentials (also handed to the job)\n"
            "  -W, --password-file F\n"
            "  -s, --cluster-secret-file F  sign tracker requests, seal the credentials\n"
            "      --tls-mode MODE      off, psk or mtls: the tracker's TLS (default\n"
            "                           $SHOAL_TLS_MODE; psk needs -s)\n"
            "      --tls-ca/--tls-cert/--tls-key F  mtls: the cluster CA, a certificate it\n"
            "                           issued and its key ($SHOAL_TLS_CA, ...)\n"
            "  -d, --tmp-dir DIR        where the payload is written first (default $TMPDIR)\n"
            "  -k, --keep               leave the artifact in the registry\n"
            "  -t, --timeout DUR        give up following the job after DUR (default 2h)\n"
            "  -o, --output FORMAT      text (default) or json\n"
            "  -h, --help               this help\n");
}

int ctl_bench_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"tracker", required_argument, NULL, 'T'},
        {"push", required_argument, NULL, 'p'},
        {"size", required_argument, NULL, 'z'},
        {"selector", required_argument, NULL, 'S'},
        {"max-concurrent", required_argument, NULL, 'c'},
        {"link-rate", required_argument, NULL, 'l'},
        {"upstream-rate", required_argument, NULL, 'U'},
        {"plot", required_argument, NULL, 'g'},
        {"plain-http", no_argument, NULL, 'H'},
        {"username", required_argument, NULL, 'u'},
        {"password-file", required_argument, NULL, 'W'},
        {"cluster-secret-file", required_argument, NULL, 's'},
        {"tls-mode", required_argument, NULL, CTL_OPT_TLS_MODE},
        {"tls-ca", required_argument, NULL, CTL_OPT_TLS_CA},
        {"tls-cert", required_argument, NULL, CTL_OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, CTL_OPT_TLS_KEY},
        {"tmp-dir", required_argument, NULL, 'd'},
        {"keep", no_argument, NULL, 'k'},
        {"timeout", required_argument, NULL, 't'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct bench b;
    const char *size = "1GiB", *timeout = "2h", *pwfile = NULL;
    char *password = NULL;
    size_t pwlen = 0;
    char err[600];
    int ch, status = 2;
    int64_t timeout_ms = 0;

    memset(&b, 0, sizeof(b));
    b.fd = -1;
    ctl_common_defaults(&b.job.common);
    b.tmp_dir = getenv("TMPDIR") && getenv("TMPDIR")[0] ? getenv("TMPDIR") : "/tmp";
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":T:p:z:S:c:l:U:g:Hu:W:s:d:kt:o:h", longopts, NULL)) !=
           -1) {
        switch (ch) {
        case 'T':
            b.job.common.tracker = optarg;
            break;
        case 'p':
            b.push = optarg;
            break;
        case 'z':
            size = optarg;
            break;
        case 'S':
            b.job.selector = optarg;
            break;
        case 'c':
            b.job.max_concurrent = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'l':
        case 'U':
            if (ctl_bench_parse_rate(optarg, ch == 'l' ? &b.link_rate : &b.upstream_rate) < 0) {
                fprintf(stderr, "shoalctl bench: invalid rate \"%s\" (e.g. 1Gbit, 100MiB)\n",
                        optarg);
                return 2;
            }
            break;
        case 'g':
            b.plot = optarg;
            break;
        case 'H':
            b.plain_http = true;
            break;
        case 'u':
            b.job.username = optarg;
            break;
        case 'W':
            pwfile = optarg;
            break;
        case 's':
            b.job.common.secret_file = optarg;
            break;
        case 'd':
            b.tmp_dir = optarg;
            break;
        case 'k':
            b.keep = true;
            break;
        case 't':
            timeout = optarg;
            break;
        case 'o':
            if (ctl_common_output(&b.job.common, "bench", optarg))
                return 2;
            break;
        case 'h':
            ctl_bench_usage(stdout);
            return 0;
        case ':':
            fprintf(stderr, "shoalctl bench: %s needs a value\n", argv[optind - 1]);
            return 2;
        default:
            if (ctl_common_tls_opt(&b.job.common, ch, optarg))
                break;
            fprintf(stderr, "shoalctl bench: unknown option %s\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "shoalctl bench: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (ctl_common_tracker(&b.job.common, "bench"))
        return 2;
    /* REGISTRY/REPO: a registry host first, no tag, no digest. */
    const char *slash = b.push ? strchr(b.push, '/') : NULL;
    if (!slash || strchr(b.push, '@') || strchr(strrchr(b.push, '/'), ':') ||
        image_ref_parse(b.push, &b.target, err, sizeof(err)) < 0 ||
        strlen(b.target.host) != (size_t)(slash - b.push) ||
        strncmp(b.target.host, b.push, (size_t)(slash - b.push)) != 0) {
        fprintf(stderr, "shoalctl bench: --push REGISTRY/REPO is required (a registry host, a "
                        "repository, no tag)\n");
        return 2;
    }
    if (config_parse_size(size, &b.size) < 0 || b.size == 0) {
        fprintf(stderr, "shoalctl bench: invalid --size \"%s\" (e.g. 512MiB, 4GiB)\n", size);
        return 2;
    }
    if (config_parse_duration(timeout, &timeout_ms) < 0 || timeout_ms <= 0) {
        fprintf(stderr, "shoalctl bench: invalid --timeout \"%s\"\n", timeout);
        return 2;
    }
    if (!b.job.username != !pwfile) {
        fprintf(stderr, "shoalctl bench: --username and --password-file go together\n");
        return 2;
    }
    if (pwfile &&
        config_read_secret("password-file", pwfile, &password, &pwlen, err, sizeof(err)) < 0) {
        fprintf(stderr, "shoalctl bench: %s\n", err);
        return 2;
    }
    b.job.password = password;
    if (ctl_http_init(&b.h, b.job.common.secret_file, err, sizeof(err)) < 0) {
        fprintf(stderr, "shoalctl bench: %s\n", err);
        goto out;
    }
    if (ctl_common_tls(&b.job.common, &b.h, "bench")) {
        ctl_http_dispose(&b.h);
        status = 2;
        goto out;
    }
    ctl_registry_init(&b.reg, &b.h, b.target.host, b.plain_http, b.target.repo, true,
                      b.job.username, password);
    status = 1;
    json_t *agents_doc = NULL, *job = NULL, *before = NULL, *after = NULL;
    if (!b.job.common.json) {
        char sz[32];
        ctl_render_bytes(b.size, sz, sizeof(sz));
        printf("writing %s of random data ...\n", sz);
        fflush(stdout);
    }
    if (make_blob(&b) || push(&b))
        goto done;
    char ref[2 * OCI_NAME_MAX + sizeof(b.manifest_digest) + 4];
    snprintf(ref, sizeof(ref), "%s/%s@%s", b.target.host, b.target.repo, b.manifest_digest);
    b.job.ref = ref;
    if (!b.job.common.json) {
        printf("pushed %s:%s (%s) in %" PRIu64 " ms\n", b.push, b.tag, b.manifest_digest,
               b.push_ms);
        fflush(stdout);
    }
    if (ctl_tracker_get(&b.h, &b.job.common, "/v1/agents", &agents_doc))
        goto done;
    before = upstream_bytes(&b.h, json_object_get(agents_doc, "agents"));
    if (ctl_job_create(&b.h, &b.job, &job))
        goto done;
    uint64_t id = (uint64_t)json_integer_value(json_object_get(job, "id"));
    json_decref(job);
    job = NULL;
    if (!b.job.common.json) {
        printf("job %" PRIu64 " running ...\n", id);
        fflush(stdout);
    }
    if (ctl_job_follow(&b.h, &b.job.common, id, timeout_ms, NULL, NULL, &job))
        goto done;
    after = upstream_bytes(&b.h, json_object_get(agents_doc, "agents"));
    char note[800] = "artifact kept (--keep)";
    bool deleted = !b.keep && cleanup(&b, note, sizeof(note));
    status = report(&b, job, before, after, deleted, note);
done:
    json_decref(agents_doc);
    json_decref(job);
    json_decref(before);
    json_decref(after);
    ctl_registry_dispose(&b.reg);
    ctl_http_dispose(&b.h);
out:
    if (b.fd >= 0)
        close(b.fd);
    if (password) {
        explicit_bzero(password, pwlen);
        free(password);
    }
    return status;
}
