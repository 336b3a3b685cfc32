/* Repository checks ahead of the client. A blob is served only through a
 * repository whose upstream holds it (an upstream HEAD, remembered for
 * repo-check-ttl: mirror_confirm). A runtime asks for an image's blobs a
 * few at a time after its manifest, so each blob request used to wait for
 * its own HEAD, behind the layers before it. When the mirror serves an
 * image manifest, it now sends those HEADs (for at most repo-check-ahead of
 * its blobs, four at a time in the manifest's order), and a blob request
 * that finds its check under way waits for it instead of sending another.
 * A GET (a client pulling the blob, not looking at it) also starts the
 * blob's download then, with the manifest's size, as a passive reader:
 * its bytes wait for the check, the download does not.
 *
 * A confirmed blob of at most blob-prefetch-max is then downloaded into the
 * cache (a passive reader of a shared download, as a prewarm fill), unless
 * the cache holds it or is downloading it: the runtime's request for an
 * image's small layers finds them there.
 *
 * A check confirms only what the blob request's own HEAD would: a 200 from
 * the same upstream and repository, with the node's credentials, whose
 * Content-Length is the size the manifest gives. Anything else (an error, a
 * prewarm job's credentials, an unlisted upstream) confirms nothing, and the
 * blob request asks for itself as before.
 *
 * Private to the mirror; sits on mirror_req.h. */
#ifndef SHOAL_MIRROR_AHEAD_H
#define SHOAL_MIRROR_AHEAD_H

#include <stddef.h>

#include "api/mirror_req.h"

/* r served the manifest body (len bytes, Content-Type mt) to a GET: starts
 * the checks of the blobs it lists that are not confirmed and not under
 * way. Does nothing for an index, a job's request or an unlisted upstream. */
void mirror_ahead_manifest(struct mreq *r, const char *mt, const char *body, size_t len);
/* A blob request not confirmed yet: when a check of r's repository and
 * digest is under way, r waits for it and true is returned; resume(r) runs
 * once it ends (confirmed or not), from the loop. For a GET, the blob's
 * download starts meanwhile unless the cache holds it or it is under way. */
bool mirror_ahead_wait(struct mreq *r, void (*resume)(struct mreq *r));
/* r's client went away: r stops waiting (no resume). */
void mirror_ahead_leave(struct mreq *r);
/* Frees what is left at the mirror's end (after the upstream module). */
void mirror_ahead_dispose(struct mirror *m);

#endif
