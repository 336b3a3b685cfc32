/* `shoalctl prewarm`: starts a prewarm job on every agent named, follows
 * them all at once and reports. */
#ifndef SHOAL_CTL_PREWARM_H
#define SHOAL_CTL_PREWARM_H

#include <stdio.h>

#define CTL_PREWARM_MAX_AGENTS 1024
#define CTL_PREWARM_POLL_MS 250

/* Runs the command; argv[0] is "prewarm". Returns the exit status: 0 when
 * every agent reports done, 1 when any failed or timed out, 2 on a usage
 * error. */
int ctl_prewarm_main(int argc, char **argv);

/* Prints the command's help. */
void ctl_prewarm_usage(FILE *out);

#endif
