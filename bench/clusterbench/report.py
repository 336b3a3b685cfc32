"""Numbers from raw runs: completion-time statistics, the fluid-model lower
bound, time to first byte, CPU per GB delivered, the targets, the Markdown
report and the plots (completion-time CDF, received-bytes curves)."""

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
    s["background_busy"] = run.get("background_busy")
    s["upstream_done"] = run.get("upstream_done")
    # Seconds of the run (T0 to the last host done) the machine was under
    # 90% busy, and how many of them came after the upstream's last byte: a
    # CPU-bound run has none; a tail that waits on round trips shows here.
    busy = run.get("busy_curve") or []
    if busy and s.get("last") is not None:
        # (end, length) of each sample under 90% busy up to the last host.
        slack = [(t1, t1 - t0) for (t0, _), (t1, b) in zip([(0.0, 0)] + busy, busy)
                 if t1 <= s["last"] and b < 90.0]
        up_done = s["upstream_done"]
        s["slack_s"] = sum(dt for _, dt in slack)
        s["slack_after_upstream_s"] = sum(dt for t, dt in slack
                                          if up_done is not None and t > up_done)
    s["extra"] = dict(run.get("extra") or {})
    # Pulling clients: first byte of the largest blob, from T0 and from its
    # GET; every client's received-bytes curve (prewarm: the agent's
    # verified bytes, from its job).
    clients = run.get("clients") or {}
    fb = sorted(r["first_byte"] - run["start"] for r in clients.values() if r.get("first_byte"))
    fbr = sorted(r["first_byte"] - r["request_largest"] for r in clients.values()
                 if r.get("first_byte") and r.get("request_largest"))
    if fb:
        s.update(ttfb_median=statistics.median(fb), ttfb_max=fb[-1],
                 ttfb_req_median=statistics.median(fbr), ttfb_req_max=fbr[-1])
    s["curves"] = {h: r["curve"] for h, r in clients.items() if r.get("curve")}
    # CPU seconds per GB delivered (hosts done x workload), per process group
    # and for the whole machine; "unattributed" is the machine's busy time
    # outside those processes (kernel threads, interrupts on idle CPUs,
    # anything else running).
    cpu = run.get("cpu") or {}
    gb = done * size / 1e9
    s["cpu_s"] = dict(cpu)
    s["cpu_per_gb"] = {k: v / gb for k, v in cpu.items() if v is not None and gb}
    if cpu.get("machine") is not None and gb:
        rest = cpu["machine"] - sum(v for k, v in cpu.items() if k != "machine" and v)
        s["cpu_per_gb"]["unattributed"] = rest / gb
    if "agents" in s["cpu_per_gb"]:
        s["extra"]["agent_cpu_s_per_gb"] = s["cpu_per_gb"]["agents"]
    if "peers" in s["cpu_per_gb"]:
        s["extra"]["peer_cpu_s_per_gb"] = s["cpu_per_gb"]["peers"]
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
    out = ["| system | hosts done | first byte s, median / max | first s | median s | p90 s | "
           "last s | last / T_min | median / T_min | upstream / F | upstream done s | "
           "aggregate Gbit/s | CPU busy (of all cores) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in rows:
        fb = ("%s / %s" % (_f(s.get("ttfb_median")), _f(s.get("ttfb_max")))
              if s.get("ttfb_median") is not None else "-")
        out.append("| %s | %d/%d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, s["hosts_done"], s["n"], fb, _f(s.get("first")), _f(s.get("median")),
            _f(s.get("p90")), _f(s.get("last")), _f(s.get("last_over_tmin")),
            _f(s.get("median_over_tmin")), _f(s.get("upstream_ratio"), "%.3f"),
            _f(s.get("upstream_done"), "%.1f"), _f(s.get("aggregate_gbit")),
            _f(s.get("cpu_busy"), "%.0f%%")))
    return "\n".join(out)


# Process groups in the CPU table, in this order; any other group follows.
CPU_GROUPS = [("agents", "agents"), ("peers", "peers (leechers)"), ("clients", "clients"),
              ("tracker", "tracker"), ("registry", "upstream registry"),
              ("seeder", "seeder"), ("proxy", "proxy cache"),
              ("unattributed", "rest of the machine")]


def cpu_table(rows):
    """CPU seconds per GB delivered, whole machine and per process group."""
    present = [g for g, _ in CPU_GROUPS if any(g in s.get("cpu_per_gb", {}) for _, s in rows)]
    out = ["| system | whole machine | " + " | ".join(dict(CPU_GROUPS)[g] for g in present) +
           " | machine busy | busy before the run |",
           "|---|---:|" + "---:|" * len(present) + "---:|---:|"]
    for name, s in rows:
        c = s.get("cpu_per_gb", {})
        out.append("| %s | %s | %s | %s | %s |" % (
            name, _f(c.get("machine")), " | ".join(_f(c.get(g)) for g in present),
            _f(s.get("cpu_busy"), "%.0f%%"), _f(s.get("background_busy"), "%.0f%%")))
    return "\n".join(out)


def _target(out, what, value, limit, fmt="%.2f", unit=""):
    if value is None:
        out.append("| %s | - | <= %s%s | n/a |" % (what, fmt % limit, unit))
    else:
        out.append("| %s | %s%s | <= %s%s | %s |" % (what, fmt % value, unit, fmt % limit, unit,
                                                    "PASS" if value <= limit else
                                                    "MISS by " + fmt % (value - limit)))


def targets(meta, results):
    """The targets of issue 12 that apply to this run, PASS or MISS (never
    asserted anywhere: a benchmark records them)."""
    n, rate = meta["n"], meta.get("rate")
    out = ["| target | measured | target | result |", "|---|---:|---:|---|"]
    configs = {(8, 400 * 10**6): {"pull_last": 1.25, "pull_median": 1.20, "prewarm_last": 1.15,
                                   "image_pull_last": 1.35},
               (16, 200 * 10**6): {"pull_last": 1.35, "prewarm_last": 1.25}}
    limits = configs.get((n, rate), {}) if meta["emulated"] else {}
    for wl, tmin, _, rows in results:
        r = dict(rows)
        pull, pre = r.get("shoal-pull"), r.get("shoal")
        k = wl.kind
        if pull and k == "model" and "pull_last" in limits:
            _target(out, "model, pull: last host / T_min", pull.get("last_over_tmin"),
                    limits["pull_last"])
        if pull and k == "model" and "pull_median" in limits:
            _target(out, "model, pull: median host / T_min", pull.get("median_over_tmin"),
                    limits["pull_median"])
        if pull and k == "image" and "image_pull_last" in limits:
            _target(out, "image, pull: last host / T_min", pull.get("last_over_tmin"),
                    limits["image_pull_last"])
        if pre and k == "model" and "prewarm_last" in limits:
            _target(out, "model, prewarm: last host / T_min", pre.get("last_over_tmin"),
                    limits["prewarm_last"])
        if pull:
            _target(out, "%s, pull: first byte of the largest blob after its GET, slowest "
                    "host (median %s s)" % (k, _f(pull.get("ttfb_req_median"))),
                    pull.get("ttfb_req_max"), 0.5, unit=" s")
            for other in ("aria2", "libtorrent"):
                o = r.get(other)
                if o:
                    a, b = pull.get("last"), o.get("last")
                    ok = a is not None and (b is None or a < b)
                    out.append("| %s, pull: last host ahead of %s | %s s | < %s s | %s |" % (
                        k, other, _f(a), _f(b), "PASS" if ok else "MISS"))
        for name in ("shoal", "shoal-pull"):
            if r.get(name):
                # A run in which no host finished measured no upstream copy.
                done = r[name].get("hosts_done")
                _target(out, "%s, %s: upstream bytes / F" % (k, name),
                        r[name].get("upstream_ratio") if done else None, 1.02, "%.3f")
    if len(out) == 2:
        return ""
    if not limits:
        out += ["", "The T_min targets are set for N=8 at 400 Mbit/s and N=16 at 200 Mbit/s "
                "on the emulated network; this run is neither."]
    return "\n".join(out)


def markdown(meta, results):
    """results: [(workload, tmin, terms, [(system, summary)])]."""
    out = ["# Cluster benchmark: %s" % meta["date"], "",
           "- command: `%s`" % meta["command"],
           "- machine: %s" % meta["machine"],
           "- network: %s" % meta["network"],
           "- repetitions per system: %d (the table shows the run with the median last-host "
           "time)" % meta["reps"],
           "- pieces: shoal %s; BitTorrent %s" % (meta["shoal_pieces"], meta["bt_pieces"]),
           "- extra agent config: %s" % (", ".join("`%s`" % kv for kv in meta.get("agent_config")
                                                   or []) or "none"),
           "- extra tracker config: %s" % (", ".join("`%s`" % kv for kv in
                                                     meta.get("tracker_config") or []) or "none"),
           "- shoal: `shoal` is prewarm mode (each agent asked to prewarm at T0; done when its "
           "store holds the verified workload), `shoal-pull` pull mode (each host's client pulls "
           "through its own agent at T0; done when the client holds the verified bytes)",
           "- pulling clients (shoal-pull, direct, proxy): manifest by digest, then %s, 3 at a "
           "time; hashed as received%s; first byte = first body byte of the largest blob, "
           "seconds from T0" % ("config and layers in manifest order (containerd)"
                                 if meta.get("pull_order", "manifest") == "manifest"
                                 else "largest blob first",
                                 " and written to tmpfs" if meta.get("client_write")
                                 else ", not written"), ""]
    if not meta["emulated"]:
        out += ["**Loopback fallback**: no network namespaces here, so the caps are only the "
                "shoal agents' own rate limits and the direct clients' read rate; the upstream "
                "is uncapped. Timings are not comparable to emulated-network runs.", ""]
    for wl, tmin, terms, rows in results:
        out += ["## %s, %s, N=%d" % (wl.describe(), fmt_size(wl.total_bytes), meta["n"]), "",
                "T_min = %.2f s (%s); a TCP payload floor is about %.3f x T_min." % (
                    tmin, ", ".join("%s = %.2f s" % kv for kv in terms.items()), TCP_FLOOR), "",
                table(rows, tmin), "",
                "CPU seconds per GB delivered (to the clients; in prewarm mode into the "
                "agents' stores), from T0 to the last host done:", "",
                cpu_table(rows), ""]
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
            if s.get("ttfb_req_median") is not None:
                out.append("- %s: first byte of the largest blob %s s after its GET (median; "
                           "slowest host %s s)" % (name, _f(s["ttfb_req_median"], "%.3f"),
                                                   _f(s["ttfb_req_max"], "%.3f")))
            if s.get("slack_s") is not None:
                out.append("- %s: machine under 90%% busy for %.1f s of the %.1f s to the last "
                           "host (%.1f s of them after the upstream's last byte)" % (
                               name, s["slack_s"], s["last"], s["slack_after_upstream_s"]))
            if s["reps"] > 1:
                out.append("- %s: last-host time of each repetition: %s s" % (
                    name, ", ".join(_f(v) for v in s["all_last"])))
            for host, err in sorted(s["errors"].items()):
                out.append("- %s: **%s failed**: %s" % (name, host, err.replace("\n", " ")[:400]))
            if ex.get("notes"):
                out.append("- %s: %s" % (name, ex["notes"]))
        out.append("")
    tt = targets(meta, results)
    if tt:
        out += ["## Targets", "", tt, ""]
    if meta.get("profiles"):
        out += ["Profiles (perf): %s" % ", ".join("`%s`" % p for p in meta["profiles"]), ""]
    out += ["Upstream / F is TCP payload the upstream host sent (interface bytes less "
            "%d bytes of headers per packet) over the workload size; where the network is not "
            "emulated it is what the system itself counted. Upstream done is when the upstream host had sent 99%% of "
            "its bytes. CPU busy is the whole machine's CPU use during the run: near 100%% means CPU-bound, not network-bound." %
            netns.HEADER_BYTES, "",
            "CPU per GB: whole machine = busy time of all CPUs from /proc/stat (user, system, "
            "interrupts; idle, iowait and steal left out); process groups = utime + stime of "
            "their processes (clients: their own count from T0 to done; BitTorrent peers: "
            "their whole life); rest of the machine = whole machine less those groups (kernel "
            "threads, softirqs on idle CPUs, and anything else running: compare the busy "
            "before the run). The machine's busy time is only comparable between runs on an "
            "otherwise quiet machine.", ""]
    return "\n".join(out)


COLORS = {"shoal": "tab:blue", "shoal-pull": "tab:orange", "direct": "tab:gray",
          "proxy": "tab:brown", "libtorrent": "tab:green", "aria2": "tab:red"}


def plot(path, results, meta):
    """Per workload: completion-time CDF per system (T_min marked) and the
    hosts' received-bytes curves (pulling clients; prewarm: the agents'
    verified bytes), with the fluid-model line F * t / T_min."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, len(results), figsize=(7 * len(results), 9), squeeze=False)
    for col, (wl, tmin, _, rows) in enumerate(results):
        ax = axes[0][col]
        for name, s in rows:
            ts = s["times"]
            if not ts:
                continue
            ys = [(i + 1) / s["n"] for i in range(len(ts))]
            ax.step([0] + ts, [0] + ys, where="post", label=name, color=COLORS.get(name))
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

        ax = axes[1][col]
        mib = wl.total_bytes / 2**20
        swarm_last = [s["times"][-1] for _, s in rows if s["times"] and
                      s["times"][-1] <= 5 * tmin]
        xmax = 1.15 * max(swarm_last + [tmin * TCP_FLOOR])
        for name, s in rows:
            label = name + (" (agents' verified bytes)" if name == "shoal" else "")
            for host, curve in sorted(s.get("curves", {}).items()):
                ax.plot([p[0] for p in curve], [p[1] / 2**20 for p in curve],
                        color=COLORS.get(name), linewidth=0.8, alpha=0.7, label=label)
                label = None
        ax.plot([0, tmin], [0, mib], color="black", linestyle="--", label="F x t / T_min")
        ax.set_xlim(0, xmax)
        ax.set_ylim(0, mib * 1.03)
        ax.set_xlabel("seconds from start")
        ax.set_ylabel("MiB received, per host")
        ax.set_title("received bytes per host (sampled every %d ms)" % meta.get("sample_ms", 100))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
