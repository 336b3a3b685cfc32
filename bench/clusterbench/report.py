"""Numbers from raw runs: completion-time statistics, the fluid-model lower
bound, the Markdown report and the CDF plot."""

import statistics

from . import netns
from .workload import fmt_size

TCP_FLOOR = 1514 / 1448  # wire bytes per payload byte at MTU 1500


def t_min(size, n, rate, upstream_rate):
    """Kumar-Ross bound in seconds for `size` bytes to n hosts (bits/s caps),
    and its three terms."""
    f = size * 8
    terms = {"F/u_s": f / upstream_rate if upstream_rate else 0.0,
             "F/d_min": f / rate,
             "N*F/(u_s+sum u_i)": n * f / ((upstream_rate or float("inf")) + n * rate)}
    return max(terms.values()), terms


def percentile(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def summarize(run, n, size, tmin):
    """One system's run -> the table's numbers (seconds from the start)."""
    times = sorted(t - run["start"] for t in run["complete"].values() if t)
    done = len(times)
    s = {"hosts_done": done, "n": n, "times": times, "errors": run["errors"]}
    if done:
        s.update(first=times[0], median=statistics.median(times), p90=percentile(times, 90),
                 last=times[-1])
    if done == n:
        s["last_over_tmin"] = s["last"] / tmin
        s["median_over_tmin"] = s["median"] / tmin
        s["aggregate_gbit"] = n * size * 8 / s["last"] / 1e9
    up = run.get("upstream_payload")
    if up is None:
        up = run.get("upstream_bytes_own")
    s["upstream_ratio"] = up / size if up is not None else None
    s["upstream_own_ratio"] = (run["upstream_bytes_own"] / size
                               if run.get("upstream_bytes_own") is not None else None)
    s["cpu_busy"] = run.get("cpu_busy")
    s["upstream_done"] = run.get("upstream_done")
    s["extra"] = run.get("extra", {})
    return s


def median_summary(summaries):
    """The run whose last-host time is the median among repetitions (a
    failed run counts as slowest), with the number of repetitions."""
    ranked = sorted(summaries, key=lambda s: (s["hosts_done"] < s["n"], s.get("last") or 0))
    pick = dict(ranked[(len(ranked) - 1) // 2])
    pick["reps"] = len(summaries)
    pick["all_last"] = [s.get("last") for s in summaries]
    return pick


def _f(v, fmt="%.2f"):
    return "-" if v is None else fmt % v


def table(rows, tmin):
    out = ["| system | hosts done | first s | median s | p90 s | last s | last / T_min | "
           "median / T_min | upstream / F | upstream done s | aggregate Gbit/s | "
           "CPU busy (of all cores) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in rows:
        out.append("| %s | %d/%d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, s["hosts_done"], s["n"], _f(s.get("first")), _f(s.get("median")),
            _f(s.get("p90")), _f(s.get("last")), _f(s.get("last_over_tmin")),
            _f(s.get("median_over_tmin")), _f(s.get("upstream_ratio"), "%.3f"),
            _f(s.get("upstream_done"), "%.1f"), _f(s.get("aggregate_gbit")),
            _f(s.get("cpu_busy"), "%.0f%%")))
    return "\n".join(out)


def markdown(meta, results):
    """results: [(workload, tmin, terms, [(system, summary)])]."""
    out = ["# Cluster benchmark: %s" % meta["date"], "",
           "- command: `%s`" % meta["command"],
           "- machine: %s" % meta["machine"],
           "- network: %s" % meta["network"],
           "- repetitions per system: %d (the table shows the run with the median last-host "
           "time)" % meta["reps"],
           "- pieces: shoal %s; BitTorrent %s" % (meta["shoal_pieces"], meta["bt_pieces"]), ""]
    if not meta["emulated"]:
        out += ["**Loopback fallback**: no network namespaces here, so the caps are only the "
                "shoal agents' own rate limits and the direct clients' read rate; the upstream "
                "is uncapped. Timings are not comparable to emulated-network runs.", ""]
    for wl, tmin, terms, rows in results:
        out += ["## %s, %s, N=%d" % (wl.describe(), fmt_size(wl.total_bytes), meta["n"]), "",
                "T_min = %.2f s (%s); a TCP payload floor is about %.3f x T_min." % (
                    tmin, ", ".join("%s = %.2f s" % kv for kv in terms.items()), TCP_FLOOR), "",
                table(rows, tmin), ""]
        for name, s in rows:
            ex = s.get("extra") or {}
            if "agent_cpu_s_per_gb" in ex:
                out.append("- %s: agent CPU %.2f s per GB delivered, peak agent RSS %.1f MiB, "
                           "agents' own upstream count %.3f x F, peer bytes received %.2f x F, agent "
                           "read/write calls moved %.2f / %.2f x F per agent"
                           % (name, ex["agent_cpu_s_per_gb"] or 0, ex["agent_peak_rss"] / 2**20,
                              s["upstream_own_ratio"] or 0,
                              ex.get("peer_rx_bytes", 0) / wl.total_bytes,
                              ex.get("agent_rchar", 0) / wl.total_bytes / s["n"],
                              ex.get("agent_wchar", 0) / wl.total_bytes / s["n"]))
            if ex.get("peer_cpu_s_per_gb") is not None:
                out.append("- %s: peer CPU %.2f s per GB delivered" % (
                    name, ex["peer_cpu_s_per_gb"]))
            if s["reps"] > 1:
                out.append("- %s: last-host time of each repetition: %s s" % (
                    name, ", ".join(_f(v) for v in s["all_last"])))
            for host, err in sorted(s["errors"].items()):
                out.append("- %s: **%s failed**: %s" % (name, host, err.replace("\n", " ")[:400]))
            if ex.get("notes"):
                out.append("- %s: %s" % (name, ex["notes"]))
        out.append("")
    out += ["Upstream / F is TCP payload the upstream host sent (interface bytes less "
            "%d bytes of headers per packet) over the workload size; where the network is not "
            "emulated it is what the system itself counted. Upstream done is when the upstream host had sent 99%% of "
            "its bytes. CPU busy is the whole machine's CPU use during the run: near 100%% means CPU-bound, not network-bound." %
            netns.HEADER_BYTES, ""]
    return "\n".join(out)


def plot(path, results, meta):
    """Completion-time CDF per system and workload, T_min marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(7 * len(results), 4.5), squeeze=False)
    for ax, (wl, tmin, _, rows) in zip(axes[0], results):
        for name, s in rows:
            ts = s["times"]
            if not ts:
                continue
            ys = [(i + 1) / s["n"] for i in range(len(ts))]
            ax.step([0] + ts, [0] + ys, where="post", label=name)
        ax.axvline(tmin, color="black", linestyle="--", label="T_min %.1f s" % tmin)
        ax.axvline(tmin * TCP_FLOOR, color="grey", linestyle=":", label="TCP floor")
        slowest = max((s["times"][-1] for _, s in rows if s["times"]), default=0)
        if slowest > 5 * tmin:  # direct pulls take N times longer: keep swarms readable
            ax.set_xscale("log")
        ax.set_xlabel("seconds from start")
        ax.set_ylabel("fraction of hosts holding the verified %s" % wl.kind)
        ax.set_title("%s %s, N=%d" % (wl.kind, fmt_size(wl.total_bytes), meta["n"]))
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
