"""The systems under test, each run on a fresh state over the same cluster:
shoal in prewarm mode (tracker + agents prewarming), shoal in pull mode (a
containerd-like client on every host pulling through its own agent), direct
registry pulls, and the reference registry's pull-through cache. (The
BitTorrent baselines are in torrent.py.)

Every runner returns {"complete": {host: epoch or None}, "errors": {host: text},
"upstream_bytes_own": bytes the system itself says it took from upstream or
None, "clients": {host: the host client's JSON result}, "cpu": {group: CPU
seconds}, "extra": {...}} and leaves nothing running. The CPU of processes
the runner registered with ctx.watch() is added by the harness; "cpu" holds
what it measured otherwise (the host clients' own count)."""

import json
import os
import shutil
import subprocess
import time

from .workload import ocibuild

HERE = os.path.dirname(os.path.abspath(__file__))
HOSTCLIENT = os.path.join(HERE, "hostclient.py")
PY = "/usr/bin/python3"
REGISTRY_BIN = "/usr/bin/docker-registry"
REGISTRY_PORT, PROXY_PORT, MIRROR_PORT, PEER_PORT, TRACKER_PORT = 5000, 5001, 5080, 5081, 5090
ADMIN_PORT, TRACKER_ADMIN_PORT = 5082, 5092


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def wait_http(host, url, proc, log, timeout=30):
    """Polls url from inside host until it answers 200."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s on %s exited (%s): %s" % (os.path.basename(log), host.name,
                                                             proc.returncode, tail(log)))
        r = subprocess.run(host.argv(["curl", "-sf", "-o", "/dev/null", "--max-time", "2", url]))
        if r.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("%s did not answer on %s within %ds: %s" % (url, host.name, timeout,
                                                                   tail(log)))


def http_get(host, url):
    r = subprocess.run(host.argv(["curl", "-sf", "--max-time", "10", url]), capture_output=True,
                       text=True)
    return r.stdout if r.returncode == 0 else None


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


def registry_config(path, addr, storage, proxy_url=None):
    cfg = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": storage},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": addr, "secret": "shoal-cluster-bench"},
    }
    if proxy_url:
        cfg["proxy"] = {"remoteurl": proxy_url}
    write_json(path, cfg)  # JSON is YAML


def start_registry(host, name, port, proxy_url=None):
    """docker-registry on host:port (storage on the host's tmpfs dir)."""
    d = os.path.join(host.dir, name)
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, "config.yml")
    registry_config(cfg, "0.0.0.0:%d" % port, os.path.join(d, "storage"), proxy_url)
    log = os.path.join(d, "registry.log")
    p = host.popen([REGISTRY_BIN, "serve", cfg], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    wait_http(host, "http://127.0.0.1:%d/v2/" % port, p, log)
    return p, d


def start_upstream(cluster, workload):
    """The upstream registry with the workload pushed into it (over the
    upstream host's loopback, so the push does not count)."""
    up = cluster.upstream
    port = up.port(REGISTRY_PORT)
    proc, _ = start_registry(up, "registry", port)
    ocibuild = os.path.join(HERE, "..", "..", "tests", "system", "ocibuild.py")
    subprocess.run(up.argv([PY, ocibuild, "push", workload.layout_dir, "--registry",
                            "127.0.0.1:%d" % port, "--repo", workload.repo, "--tag",
                            workload.tag]), check=True, capture_output=True, timeout=600)
    return proc, "%s:%d" % (up.ip, port)


def start_clients(ctx, hosts, argv_for):
    procs = {h.name: h.popen([PY, HOSTCLIENT] + argv_for(h), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for h in hosts}
    for p in procs.values():
        ctx.watch("clients", p, cpu=False)  # they count their own CPU
    return procs


def collect_clients(procs, deadline):
    """Waits for every host client; returns (complete, errors, results)."""
    complete, errors, results = {}, {}, {}
    for name, p in procs.items():
        try:
            out, _ = p.communicate(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            errors[name] = "timed out"
            complete[name] = None
            continue
        lines = [ln for ln in (out or "").splitlines() if ln.startswith("{")]
        res = json.loads(lines[-1]) if lines else {"error": "no result: %s" % out[-300:]}
        complete[name] = res.get("done")
        results[name] = res
        if "error" in res:
            errors[name] = res["error"]
    return complete, errors, results


def clients_cpu(results):
    """The host clients' own CPU seconds (from the start time to done)."""
    return sum(r.get("cpu_s") or 0 for r in results.values())


def proc_cpu_seconds(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


def proc_io(pid):
    """(rchar, wchar) of a process: bytes through read/write-like calls."""
    try:
        with open("/proc/%d/io" % pid) as f:
            kv = dict(line.split(":") for line in f)
        return int(kv["rchar"]), int(kv["wchar"])
    except (OSError, KeyError, ValueError):
        return 0, 0


def proc_peak_rss(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def metric(text, name):
    total = 0
    for line in (text or "").splitlines():
        if line.startswith(name) and (len(line) > len(name) and line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ------------------------------------------------------------------ shoal --

def start_shoal(ctx):
    """shoal-tracker on the tracker host and an agent per host, all healthy;
    returns {host name: (host, process, log, mirror URL)}."""
    cluster, wl = ctx.cluster, ctx.workload
    tr = cluster.tracker
    secret = os.path.join(cluster.workdir, "cluster-secret")
    with open(secret, "w") as f:
        f.write(os.urandom(16).hex() + "\n")
    tport = tr.port(TRACKER_PORT)
    tlog = os.path.join(tr.dir, "shoal-tracker.log")
    targv = [os.path.join(ctx.bin_dir, "shoal-tracker"), "--listen", "%s:%d" % (tr.ip, tport),
             "--admin-listen", "127.0.0.1:%d" % tr.port(TRACKER_ADMIN_PORT),
             "--cluster-secret-file", secret, "--log-level", "warn"]
    if ctx.piece_length:
        targv += ["--piece-length", str(ctx.piece_length)]
    for kv in ctx.tracker_config:
        k, v = kv.split("=", 1)
        targv += ["--" + k, v]
    tproc = tr.popen(targv, stdout=open(tlog, "w"), stderr=subprocess.STDOUT)
    wait_http(tr, "http://%s:%d/_shoal/health" % (tr.ip, tport), tproc, tlog)
    ctx.watch("tracker", tproc)
    agents = {}
    for h in cluster.hosts:
        data = os.path.join(h.dir, "shoal-data")
        mirror = "127.0.0.1:%d" % h.port(MIRROR_PORT)
        admin = "127.0.0.1:%d" % h.port(ADMIN_PORT)
        cfg = {
            "listen": mirror,
            "admin-listen": admin,
            "data-dir": data,
            "upstream": "http://" + ctx.registry,
            "upstreams": [{"host": ctx.registry, "url": "http://" + ctx.registry}],
            "cache-max-bytes": "%dB" % max(1 << 30, 2 * wl.total_bytes),
            "tracker": "http://%s:%d" % (tr.ip, tport),
            "peer-listen": "%s:%d" % (h.ip, h.port(PEER_PORT)),
            "cluster-secret-file": secret,
            "log-level": "warn",
        }
        for kv in ctx.agent_config:
            k, v = kv.split("=", 1)
            cfg[k] = int(v) if v.lstrip("-").isdigit() else v
        if not cluster.emulated:  # the agents' own limits stand in for tbf
            cfg["ingress-rate"] = "%dB" % (cluster.rate // 8)
            cfg["egress-rate"] = "%dB" % (cluster.rate // 8)
        cpath = os.path.join(h.dir, "shoal-agent.json")
        write_json(cpath, cfg)
        log = os.path.join(h.dir, "shoal-agent.log")
        p = h.popen([os.path.join(ctx.bin_dir, "shoal-agent"), "--config", cpath],
                    stdout=open(log, "w"), stderr=subprocess.STDOUT)
        agents[h.name] = (h, p, log, "http://" + mirror, "http://" + admin)
    for h, p, log, url, _ in agents.values():
        wait_http(h, url + "/_shoal/health", p, log)
        ctx.watch("agents", p)
    ctx.watch("registry", ctx.registry_proc)
    return agents


def finish_shoal(ctx, agents, complete, errors, check_store):
    """Reads the agents' counters, checks they are alive (and, with
    check_store, that every host's store holds the verified workload),
    stops everything and removes the agents' data; returns "extra"."""
    cluster, wl = ctx.cluster, ctx.workload
    rss = max(proc_peak_rss(a[1].pid) or 0 for a in agents.values())
    io = [proc_io(a[1].pid) for a in agents.values()]
    up_own = peer_rx = 0
    for n, (h, p, log, url, admin_url) in agents.items():
        m = http_get(h, admin_url + "/metrics")
        up_own += metric(m, "shoal_upstream_bytes_total")
        peer_rx += metric(m, "shoal_peer_rx_bytes_total")
        if p.poll() is not None:
            errors[n] = "agent exited %s: %s" % (p.returncode, tail(log))
        if check_store and complete.get(n) and errors.get(n) is None:
            bad = verify_files(wl, os.path.join(h.dir, "shoal-data", "blobs", "sha256"))
            if bad:
                errors[n], complete[n] = bad, None
    for n in errors:
        if n in agents:
            errors[n] += " | agent log: " + tail(agents[n][2], 5)
    ctx.stop_all()
    for h in cluster.hosts:
        shutil.rmtree(os.path.join(h.dir, "shoal-data"), ignore_errors=True)
    return up_own, {"agent_peak_rss": rss, "peer_rx_bytes": peer_rx,
                    "agent_rchar": sum(r for r, _ in io), "agent_wchar": sum(w for _, w in io)}


def run_shoal(ctx):
    """Prewarm mode: every agent is asked at T0 to prewarm the workload; a
    host is done when every blob is in its agent's store (verified)."""
    cluster, wl = ctx.cluster, ctx.workload
    agents = start_shoal(ctx)
    start = ctx.next_start()
    digests = ",".join(f.sha256 for f in wl.files)
    clients = start_clients(ctx, cluster.hosts, lambda h: [
        "prewarm", "--agent", agents[h.name][3], "--ref", wl.ref, "--start", repr(start),
        "--blob-dir", os.path.join(h.dir, "shoal-data", "blobs", "sha256"), "--digests",
        digests])
    ctx.begin(start)
    complete, errors, results = collect_clients(clients, start + ctx.timeout)
    ctx.end()
    up_own, extra = finish_shoal(ctx, agents, complete, errors, check_store=True)
    return {"complete": complete, "errors": errors, "upstream_bytes_own": up_own,
            "clients": results, "cpu": {"clients": clients_cpu(results)}, "extra": extra}


def run_shoal_pull(ctx):
    """Pull mode: at T0 every host's client pulls the workload through its
    own agent (hostclient.py pull, containerd's order and concurrency); a
    host is done when its client holds every blob, hashed and checked."""
    cluster, wl = ctx.cluster, ctx.workload
    agents = start_shoal(ctx)
    start = ctx.next_start()
    clients = start_clients(ctx, cluster.hosts, lambda h: [
        "pull", "--registry", agents[h.name][3][len("http://"):], "--ns", ctx.registry,
        "--repo", wl.repo, "--ref", wl.tag, "--start", repr(start)] + ctx.client_args(h))
    ctx.begin(start)
    complete, errors, results = collect_clients(clients, start + ctx.timeout)
    ctx.end()
    up_own, extra = finish_shoal(ctx, agents, complete, errors, check_store=False)
    for h in cluster.hosts:
        shutil.rmtree(os.path.join(h.dir, "shoal-pull"), ignore_errors=True)
    return {"complete": complete, "errors": errors, "upstream_bytes_own": up_own,
            "clients": results, "cpu": {"clients": clients_cpu(results)}, "extra": extra}


def verify_files(wl, blob_dir):
    """None when every workload blob is in blob_dir with its digest."""
    for f in wl.files:
        path = os.path.join(blob_dir, f.sha256)
        if not os.path.exists(path):
            return "blob %s missing from the store" % f.digest
        if ocibuild.sha256_file(path) != f.digest:
            return "blob %s stored with the wrong digest" % f.digest
    return None


# ------------------------------------------------------ direct and proxy --

def _pull_all(ctx, source_for, label):
    cluster, wl = ctx.cluster, ctx.workload
    start = ctx.next_start()
    rate = [] if cluster.emulated else ["--rate", str(cluster.rate // 8)]
    clients = start_clients(ctx, cluster.hosts, lambda h: [
        "pull", "--registry", source_for(h), "--repo", wl.repo, "--ref", wl.tag,
        "--start", repr(start)] + rate + ctx.client_args(h, label))
    ctx.watch("registry", ctx.registry_proc)
    ctx.begin(start)
    complete, errors, results = collect_clients(clients, start + ctx.timeout)
    ctx.end()
    for h in cluster.hosts:
        shutil.rmtree(os.path.join(h.dir, label), ignore_errors=True)
    return complete, errors, results


def run_direct(ctx):
    complete, errors, results = _pull_all(ctx, lambda h: ctx.registry, "direct")
    ok = sum(1 for t in complete.values() if t)
    return {"complete": complete, "errors": errors,
            "upstream_bytes_own": ok * ctx.workload.total_bytes, "clients": results,
            "cpu": {"clients": clients_cpu(results)}, "extra": {}}


def run_proxy(ctx):
    cluster = ctx.cluster
    cache_host = cluster.hosts[0]
    port = cache_host.port(PROXY_PORT)
    proc, d = start_registry(cache_host, "proxy", port, "http://" + ctx.registry)
    ctx.watch("proxy", proc)
    complete, errors, results = _pull_all(
        ctx, lambda h: ("127.0.0.1:%d" % port if h is cache_host else
                        "%s:%d" % (cache_host.ip, port)), "proxy-pull")
    if proc.poll() is not None:
        errors["proxy"] = "docker-registry proxy exited: %s" % tail(os.path.join(d,
                                                                              "registry.log"))
    ctx.stop_all()
    shutil.rmtree(d, ignore_errors=True)
    return {"complete": complete, "errors": errors, "upstream_bytes_own": None,
            "clients": results, "cpu": {"clients": clients_cpu(results)},
            "extra": {"cache_host": cache_host.name}}
