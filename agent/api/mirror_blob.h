/* GET/HEAD /v2/<name>/blobs/<digest>: from the cache with sendfile, or
 * streamed from a shared, verified download. Private to the mirror; sits on
 * mirror_req.h. */
#ifndef SHOAL_MIRROR_BLOB_H
#define SHOAL_MIRROR_BLOB_H

#include "api/mirror_req.h"

/* Serves a blob request; r->def, r->repo and r->d are set. Answers (or
 * starts answering) before or after returning. */
void mirror_blob(struct mreq *r);
/* The client went away: drops r's reader and its pin on the blob. */
void mirror_blob_closed(struct mreq *r);

#endif
