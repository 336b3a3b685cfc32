/* Per-job pull credentials. See job_creds.h. */
#define _GNU_SOURCE /* explicit_bzero */
#include "upstream/job_creds.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>

#include "shoal/error.h"

struct entry {
    struct entry *next;
    char handle[JOB_CREDS_HANDLE_LEN + 1];
    char *username, *password, *authorization;
};

struct job_creds {
    struct entry *entries;
    size_t n;
};

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void entry_free(struct entry *e)
{
    free(e->username);
    wipe_free(e->password);
    wipe_free(e->authorization);
    explicit_bzero(e->handle, sizeof(e->handle));
    free(e);
}

int job_creds_create(struct job_creds **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : -ENOMEM;
}

void job_creds_destroy(struct job_creds *t)
{
    if (!t)
        return;
    while (t->entries) {
        struct entry *e = t->entries;
        t->entries = e->next;
        entry_free(e);
    }
    free(t);
}

/* A field that goes into an HTTP header or a Basic credential: printable
 * ASCII and blanks, bounded. NULL and "" count as absent. */
static bool field_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n > JOB_CREDS_FIELD_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    }
    return true;
}

static bool given(const char *s)
{
    return s && s[0];
}

static int dup_field(char **dst, const char *src)
{
    *dst = NULL;
    if (given(src) && !(*dst = strdup(src)))
        return -ENOMEM;
    return 0;
}

int job_creds_add(struct job_creds *t, const struct job_creds_secret *s, char *handle)
{
    unsigned char r[JOB_CREDS_HANDLE_LEN / 2];
    bool basic = given(s->username) && given(s->password);
    bool bearer = given(s->authorization);

    if (basic == bearer || (!basic && (given(s->username) || given(s->password))) ||
        !field_ok(s->username) || !field_ok(s->password) || !field_ok(s->authorization))
        return SHOAL_EPARSE;
    if (t->n >= JOB_CREDS_MAX)
        return SHOAL_EBUSY;
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        return SHOAL_EINTERNAL;
    struct entry *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(e->handle + 2 * i, 3, "%02x", r[i]);
    explicit_bzero(r, sizeof(r));
    if (dup_field(&e->username, s->username) < 0 || dup_field(&e->password, s->password) < 0 ||
        dup_field(&e->authorization, s->authorization) < 0) {
        entry_free(e);
        return -ENOMEM;
    }
    memcpy(handle, e->handle, sizeof(e->handle));
    e->next = t->entries;
    t->entries = e;
    t->n++;
    return 0;
}

static struct entry **find(const struct job_creds *t, const char *handle)
{
    struct entry **pp;
    if (!handle || strlen(handle) != JOB_CREDS_HANDLE_LEN)
        return NULL;
    for (pp = (struct entry **)&t->entries; *pp; pp = &(*pp)->next) {
        /* The handle is the key to someone's credentials: compare in
         * constant time. */
        if (CRYPTO_memcmp((*pp)->handle, handle, JOB_CREDS_HANDLE_LEN) == 0)
            return pp;
    }
    return NULL;
}

void job_creds_remove(struct job_creds *t, const char *handle)
{
    struct entry **pp = find(t, handle);
    if (!pp)
        return;
    struct entry *e = *pp;
    *pp = e->next;
    t->n--;
    entry_free(e);
}

int job_creds_apply(const struct job_creds *t, const char *handle, const struct upstream_def *base,
                    struct upstream_def *out)
{
    struct entry **pp = find(t, handle);
    memset(out, 0, sizeof(*out));
    if (!pp)
        return SHOAL_ENOT_FOUND;
    struct entry *e = *pp;
    struct upstream_def b = *base;
    /* The agent's own credentials are not the job's: they are dropped. */
    b.username = e->username;
    b.password = e->password;
    b.password_file = NULL;
    b.authorization = e->authorization;
    b.auth_ns = e->handle;
    return upstream_def_copy(out, &b);
}

size_t job_creds_count(const struct job_creds *t)
{
    return t ? t->n : 0;
}
