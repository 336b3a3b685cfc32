/* `shoalctl bench --tracker URL --push REGISTRY/REPO`: measures distribution
 * on the user's own cluster. It pushes a random blob of --size as an OCI
 * artifact (with the user's credentials), warms it on the agents the
 * selector picks through a cluster job, and reports per-node completion
 * (first, median, p90, last), aggregate throughput, the upstream bytes
 * fetched over the blob size, and the fluid-model lower bound T_min from the
 * link rates given (or the highest rates observed), with a completion-time
 * plot; then deletes the artifact where the registry allows it. */
#ifndef SHOAL_CTL_BENCH_H
#define SHOAL_CTL_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* T_min = max(F/u_s, F/d_min, N*F/(u_s + N*u)) in milliseconds, for a file
 * of size bytes to n nodes with upload and download rate u each and an
 * upstream rate u_s (bytes per second). Pure. */
double ctl_bench_tmin_ms(uint64_t size, size_t n, double u_s, double u);

/* The q-quantile (0..1, nearest rank) of n sorted values. */
uint64_t ctl_bench_quantile(const uint64_t *sorted, size_t n, double q);

/* Parses a rate: a size per second ("100MiB", "1.5GB") or bits per second
 * ("400Mbit", "10Gbit"). Bytes per second into *out; 0 or SHOAL_EPARSE. */
int ctl_bench_parse_rate(const char *s, double *out);

int ctl_bench_main(int argc, char **argv);
void ctl_bench_usage(FILE *out);

#endif
