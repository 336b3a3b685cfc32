/* Reserving a download's blocks off the event loop, where the store leaves
 * it to the caller (store_reserve_deferred: a tmpfs, whose fallocate
 * zero-fills every page under the file's lock).
 *
 * The thread pool reserves one stretch (8 MiB) per job, and the next one is
 * queued from the loop while the owner still wants it: each stretch holds
 * the file's lock only while it is zero-filled, so the download's writes get
 * in between, and the pool (shared with the writes, hashes and peer reads of
 * every blob) is held a stretch at a time, not for a whole blob. The job has
 * its own descriptor and may outlive its owner by the stretch it is in.
 *
 * Loop thread only. */
#ifndef SHOAL_AGENT_CACHE_SPACE_RESERVE_H
#define SHOAL_AGENT_CACHE_SPACE_RESERVE_H

#include <stdint.h>

#include <uv.h>

struct space_reserve;

/* Starts reserving the first size bytes of fd (duplicated), from offset 0.
 * *slot is the owner's pointer to the job: set here, cleared when the job
 * ends or is detached. digest names the blob in logs. 0, or -errno with
 * nothing started and *slot untouched. */
int space_reserve_start(uv_loop_t *loop, int fd, uint64_t size, const char *digest,
                        struct space_reserve **slot);

/* The file was truncated, which gave the reserved blocks back: the job
 * starts over from 0 after the stretch under way. */
void space_reserve_restart(struct space_reserve *r);

/* The owner lets go (NULL: nothing): a stretch still waiting for the pool
 * is cancelled, one running ends the job when it is done; the owner's slot
 * is cleared now. */
void space_reserve_detach(struct space_reserve *r);

#endif
