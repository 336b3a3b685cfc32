/* GET/HEAD /v2/<name>/manifests/<ref>: from the cache when upstream confirmed
 * the digest recently (or the short tag cache answers), else from upstream,
 * verified and stored; the last known answer when upstream is unreachable.
 * Private to the mirror; sits on mirror_req.h. */
#ifndef SHOAL_MIRROR_MANIFEST_H
#define SHOAL_MIRROR_MANIFEST_H

#include "api/mirror_req.h"

/* Serves a manifest request; r->def, r->repo, r->ref (and r->d when
 * r->by_digest) are set. */
void mirror_manifest(struct mreq *r);

#endif
