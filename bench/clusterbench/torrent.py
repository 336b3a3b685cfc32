"""BitTorrent baselines for the cluster benchmark: libtorrent and aria2c.

One run = an opentracker on cluster.tracker, one seeder on cluster.upstream
holding the workload files (started at once: like an upstream registry it
is up and announced before anyone asks), one leecher per host in
cluster.hosts, all leechers starting at the same wall-clock time
(start_at). run_libtorrent and run_aria2 both return
    {"complete": {host.name: epoch_or_None}, "seed_payload_up": bytes_or_None,
     "cpu_s": {host.name: seconds_or_None}, "tracker_cpu_s": seconds_or_None,
     "notes": "..."}
("cpu_s": user+system CPU of each peer process, the seeder under
cluster.upstream.name, when known; "tracker_cpu_s": opentracker's). After the peers are stopped (untimed),
each leecher's files are checked against the workload's SHA-256 digests;
a mismatch turns that host's completion time into None and adds a note.

Payload layout (what a seeder must find in its save dir, and where a
leecher's files end up): a one-file torrent is SAVE/<name>; a multi-file
torrent puts every file under one directory, SAVE/payload/<name>.
stage_payload() builds that layout with hard links (copies across file
systems), payload_layout() names the paths.

opentracker: see opentracker_argv. Its announce interval is ~30 minutes,
so the peers re-announce every second on their own.

Per-host files go to HOST.dir/lt or HOST.dir/aria2 (seeder: .../lt-seed,
.../aria2-seed; tracker: .../bt-tracker), each emptied before a run: the
payload under data/ (a leecher's is removed once checked), the peer's stdout
in peer.log (stderr: peer.log.err).
Ports: tracker 6969 (TCP+UDP), peers 6881, aria2 seeder's JSON-RPC 6800.
"""

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import libtorrent as lt

from .netns import stop_processes
from .systems import proc_cpu_seconds
from .workload import ocibuild

PY = "/usr/bin/python3"
LT_PEER = str(Path(__file__).resolve().with_name("lt_peer.py"))
OPENTRACKER = "/usr/bin/opentracker"
TRACKER_PORT = 6969
PEER_PORT = 6881
ARIA2_RPC_PORT = 6800
MULTI_DIR = "payload"
STOP_GRACE_S = 5.0
POLL_S = 0.05

# Run in the tracker's netns: announce the info-hash (argv[2], hex) to the
# tracker (argv[1], announce URL) until it is accepted, then withdraw that
# fake peer with event=stopped. Exit 0 when accepted, 1 after 10 s.
_TRACKER_PROBE = r"""
import sys, time, urllib.parse, urllib.request
q = {"info_hash": bytes.fromhex(sys.argv[2]), "port": 1, "compact": 1,
     "peer_id": b"-PROBE-0000000000000", "uploaded": 0, "downloaded": 0,
     "left": 0}
get = lambda: urllib.request.urlopen(
    sys.argv[1] + "?" + urllib.parse.urlencode(q), timeout=1).read()
for _ in range(200):
    try:
        body = get()
        if body.startswith(b"d") and b"failure" not in body:
            q["event"] = "stopped"
            get()
            sys.exit(0)
        print(body[:200], file=sys.stderr)
    except OSError as e:
        print(e, file=sys.stderr)
    time.sleep(0.05)
sys.exit(1)
"""

# Run in the upstream's netns: total uploadLength of the active downloads of
# the aria2 seeder whose JSON-RPC URL is argv[1].
_ARIA2_UPLOAD = r"""
import json, sys, urllib.request
req = {"jsonrpc": "2.0", "id": "u", "method": "aria2.tellActive",
       "params": [["uploadLength"]]}
r = urllib.request.urlopen(sys.argv[1], json.dumps(req).encode(), timeout=3)
print(sum(int(d["uploadLength"]) for d in json.load(r)["result"]))
"""

# Sleep until the epoch in argv[1], print a "started" line, exec argv[2:].
_WAIT_EXEC = r"""
import json, os, sys, time
t = float(sys.argv[1])
while time.time() < t:
    time.sleep(min(0.1, t - time.time()))
print(json.dumps({"event": "started", "t": time.time()}), flush=True)
os.execvp(sys.argv[2], sys.argv[2:])
"""

# --on-bt-download-complete hook: aria2 runs it with GID, number of files
# and first file path once every piece is downloaded and verified (before
# seeding); it appends "EPOCH GID N PATH" to $CLUSTERBENCH_DONE.
_ARIA2_HOOK = ('#!/bin/sh\n'
               'echo "$(date +%s.%N) $1 $2 $3" >> "$CLUSTERBENCH_DONE"\n')


def _piece_hashes(paths, piece_length):
    """SHA-1 of each piece of the concatenation of the files at paths."""
    piece = b""
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(piece_length - len(piece)):
                piece += chunk
                if len(piece) == piece_length:
                    yield hashlib.sha1(piece).digest()
                    piece = b""
    if piece:
        yield hashlib.sha1(piece).digest()


def make_torrent(files, piece_length, announce_url, out_path):
    """Write a v1-only torrent of files [(name, path)] to out_path.

    One file: a single-file torrent named after it; more: a multi-file
    torrent with the files, in the given order, under MULTI_DIR.
    piece_length must be a power of two >= 16 KiB. Returns the v1
    info-hash as 40 lowercase hex digits.
    """
    fs = lt.file_storage()
    for name, path in files:
        fs.add_file(name if len(files) == 1 else MULTI_DIR + "/" + name,
                    os.path.getsize(path))
    ct = lt.create_torrent(fs, piece_length, flags=lt.create_torrent.v1_only)
    ct.add_tracker(announce_url)
    ct.set_creator("shoal clusterbench")
    for i, digest in enumerate(_piece_hashes([p for _, p in files],
                                             piece_length)):
        ct.set_hash(i, digest)
    Path(out_path).write_bytes(lt.bencode(ct.generate()))
    return str(lt.torrent_info(str(out_path)).info_hashes().v1)


def payload_layout(torrent_path, save_dir):
    """{file name: path of that file under save_dir} for the torrent."""
    fs = lt.torrent_info(str(torrent_path)).files()
    return {os.path.basename(fs.file_path(i)): Path(save_dir, fs.file_path(i))
            for i in range(fs.num_files())}


def stage_payload(files, torrent_path, save_dir):
    """Link files [(name, path)] to where a seeder in save_dir needs them."""
    layout = payload_layout(torrent_path, save_dir)
    for name, src in files:
        dst = layout[name]
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)


def write_whitelist(path, infohashes):
    """Write opentracker's whitelist: one lowercase hex info-hash a line."""
    Path(path).write_text("".join(h.lower() + "\n" for h in infohashes))
    os.chmod(path, 0o644)


def opentracker_argv(ip, port, whitelist_path, workdir):
    """argv of an opentracker on ip:port (TCP and UDP), chrooted to workdir.

    The Debian build only serves the info-hashes in its -w file (see
    write_whitelist). Started as root it chroots to its -d dir and
    setuid()s to -u (default "nobody"; it refuses to go on as root, so
    -u root exits with 111) *before* it opens the whitelist. Hence
    whitelist_path must lie in workdir (it is passed relative to it),
    workdir must be searchable by nobody (0755) and the file readable.
    """
    rel = os.path.relpath(whitelist_path, workdir)
    if rel.startswith(".."):
        raise ValueError("whitelist must be inside the tracker's workdir")
    return [OPENTRACKER, "-i", ip, "-p", str(port), "-P", str(port),
            "-d", str(workdir), "-w", rel]


def _fresh_dir(path):
    """Empty (or create) the directory path and return it."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _event(path, name):
    """The first JSON line {"event": name, ...} in the file at path."""
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == name:
                return ev
    return None


# aria2c flags of every peer: TCP only (aria2 has no uTP), no DHT/LPD/IPv6,
# no rate limits, as many peers as it finds, re-announce every second.
ARIA2_FLAGS = [
    "--no-conf=true",                        # ignore ~/.aria2/aria2.conf
    "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
    "--disable-ipv6=true",
    "--listen-port=%d" % PEER_PORT,
    "--bt-tracker-interval=1",               # re-announce every second
    "--bt-max-peers=0",                      # unlimited peers
    "--bt-request-peer-speed-limit=1024M",   # always look for more peers
    "--max-overall-upload-limit=0", "--max-overall-download-limit=0",
    "--seed-ratio=0.0",                      # seed until killed
    "--file-allocation=none",
    "--auto-save-interval=0",                # no control-file writes
    "--summary-interval=0", "--show-console-readout=false",
]
# Seeder only: trust the staged files (no hashing), and JSON-RPC so that
# its uploadLength can be read before it is stopped.
ARIA2_SEED_FLAGS = [
    "--bt-seed-unverified=true", "--check-integrity=false",
    "--enable-rpc=true", "--rpc-listen-all=true",
    "--rpc-listen-port=%d" % ARIA2_RPC_PORT,
]


class _Procs:
    """The processes of one run and their log files."""

    def __init__(self):
        self.procs = []
        self.files = []

    def start(self, host, argv, out, **kw):
        """host.popen(argv): stdout to out, stderr to out + '.err'."""
        stdout, stderr = open(out, "w"), open(str(out) + ".err", "w")
        self.files += [stdout, stderr]
        p = host.popen(argv, stdin=subprocess.DEVNULL, stdout=stdout,
                       stderr=stderr, **kw)
        self.procs.append(p)
        return p

    def stop(self):
        """SIGTERM everything, SIGKILL what is left after STOP_GRACE_S."""
        stop_processes(self.procs, STOP_GRACE_S)
        for f in self.files:
            f.close()


def _python_in(host, code, *args, timeout=20):
    """Run `python3 -c code args` in host's netns: (status, stdout, stderr)."""
    p = host.popen([PY, "-c", code] + list(args), stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    return p.returncode, out.decode(), err.decode()


def _start_tracker(procs, host, url, infohash):
    """Start opentracker on host for infohash; return once it serves it."""
    workdir = _fresh_dir(Path(host.dir, "bt-tracker"))
    os.chmod(workdir, 0o755)
    write_whitelist(workdir / "whitelist", [infohash])
    proc = procs.start(host, opentracker_argv(host.ip, TRACKER_PORT,
                                              workdir / "whitelist", workdir),
                       workdir / "opentracker.log")
    status, _, err = _python_in(host, _TRACKER_PROBE, url, infohash)
    if status != 0:
        raise RuntimeError("opentracker on %s does not serve %s: %s"
                           % (host.name, infohash, err[-300:]))
    return proc


def _aria2_seed_upload(host):
    """uploadLength of the aria2 seeder on host, via JSON-RPC; or None."""
    url = "http://%s:%d/jsonrpc" % (host.ip, ARIA2_RPC_PORT)
    status, out, _ = _python_in(host, _ARIA2_UPLOAD, url, timeout=10)
    return int(out) if status == 0 else None


def _peer_argv(kind, host, torrent, save, start_at, seed, hook):
    """argv of a libtorrent or aria2 peer on host starting at start_at."""
    if kind == "lt":
        argv = [PY, LT_PEER, "--torrent", str(torrent), "--save", str(save),
                "--listen", "%s:%d" % (host.ip, PEER_PORT),
                "--start", repr(start_at)]
        return argv + ["--seed"] if seed else argv
    argv = [PY, "-c", _WAIT_EXEC, repr(start_at), "aria2c"] + ARIA2_FLAGS
    argv += ["--interface=" + host.ip, "--dir=" + str(save)]
    argv += ARIA2_SEED_FLAGS if seed else ["--on-bt-download-complete=" + hook]
    return argv + [str(torrent)]


def _completed(kind, wdir):
    """Completion epoch of the peer working in wdir, or None."""
    if kind == "lt":
        ev = _event(wdir / "peer.log", "complete")
        return ev["t"] if ev else None
    try:  # written by the aria2 hook
        return float((wdir / "done").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def _run(kind, cluster, workload, piece_length, start_at, timeout):
    """Shared body of run_libtorrent ("lt") and run_aria2 ("aria2")."""
    procs, notes = _Procs(), []
    files = [(f.name, f.path) for f in workload.files]
    up = cluster.upstream
    seed_dir = Path(up.dir, kind + "-seed")
    torrent = seed_dir / "payload.torrent"
    peers = {}  # host name -> (Popen, workdir); the seeder under up.name
    hookdir = None
    seed_up, cpu, tracker_cpu = None, {}, None
    deadline = start_at + timeout
    try:
        _fresh_dir(seed_dir)
        url = "http://%s:%d/announce" % (cluster.tracker.ip, TRACKER_PORT)
        infohash = make_torrent(files, piece_length, url, torrent)
        stage_payload(files, torrent, seed_dir / "data")
        tracker = _start_tracker(procs, cluster.tracker, url, infohash)
        tracker_cpu0 = proc_cpu_seconds(tracker.pid)
        if kind == "aria2":
            hookdir = Path(tempfile.mkdtemp(prefix="clusterbench-aria2-"))
            (hookdir / "hook.sh").write_text(_ARIA2_HOOK)
            os.chmod(hookdir / "hook.sh", 0o755)
        for host in [up] + list(cluster.hosts):
            seed = host is up
            wdir = seed_dir if seed else _fresh_dir(Path(host.dir, kind))
            env = None
            if kind == "aria2":
                env = dict(os.environ, CLUSTERBENCH_DONE=str(wdir / "done"))
            # The seeder starts now (like an upstream registry, it is up and
            # announced before anyone asks); the leechers at start_at.
            argv = _peer_argv(kind, host, torrent, wdir / "data",
                              time.time() if seed else start_at, seed,
                              hookdir and str(hookdir / "hook.sh"))
            peers[host.name] = (procs.start(host, argv, wdir / "peer.log",
                                            env=env), wdir)

        pending = {h.name for h in cluster.hosts}
        while pending and time.time() < deadline:
            for name in sorted(pending):
                p, wdir = peers[name]
                if _completed(kind, wdir) is not None:
                    pending.discard(name)
                elif p.poll() is not None:
                    notes.append("%s: %s exited with status %s before "
                                 "completing" % (name, kind, p.returncode))
                    pending.discard(name)
            if peers[up.name][0].poll() is not None:
                notes.append("seeder exited with status %s"
                             % peers[up.name][0].returncode)
                break
            time.sleep(POLL_S)
        if kind == "aria2":
            seed_up = _aria2_seed_upload(up)
            cpu = {name: proc_cpu_seconds(p.pid) for name, (p, _) in peers.items()}
        tracker_cpu1 = proc_cpu_seconds(tracker.pid)
        if tracker_cpu0 is not None and tracker_cpu1 is not None:
            tracker_cpu = tracker_cpu1 - tracker_cpu0
    finally:
        procs.stop()
        if hookdir:
            shutil.rmtree(hookdir, ignore_errors=True)

    complete = {}
    for host in cluster.hosts:
        t = _completed(kind, peers[host.name][1])
        complete[host.name] = t if t is not None and t <= deadline else None
    missing = sorted(n for n, t in complete.items() if t is None)
    if missing:
        notes.append("not complete within %g s: %s"
                     % (timeout, " ".join(missing)))
    for name, (_, wdir) in peers.items():
        ev = _event(wdir / "peer.log", "started")
        if ev is None:
            notes.append("%s: never started" % name)
        elif name != up.name and ev["t"] - start_at > 0.25:
            notes.append("%s: started %.2f s after start_at"
                         % (name, ev["t"] - start_at))
        if kind == "lt":
            stats = _event(wdir / "peer.log", "stats") or {}
            cpu[name] = stats.get("cpu_s")
            if name == up.name:
                seed_up = stats.get("payload_up")
    for host in cluster.hosts:
        if complete[host.name] is None:
            continue
        layout = payload_layout(torrent, peers[host.name][1] / "data")
        bad = [f.name for f in workload.files
               if not layout[f.name].is_file()
               or ocibuild.sha256_file(layout[f.name]) != f.digest]
        if bad:
            complete[host.name] = None
            notes.append("%s: wrong content: %s" % (host.name, " ".join(bad)))
    # The leechers' copies go (the logs stay): N copies per system would
    # otherwise pile up on the tmpfs run after run.
    for host in cluster.hosts:
        shutil.rmtree(peers[host.name][1] / "data", ignore_errors=True)
    return {"complete": complete, "seed_payload_up": seed_up, "cpu_s": cpu,
            "tracker_cpu_s": tracker_cpu, "notes": "; ".join(notes)}


def run_libtorrent(cluster, workload, piece_length, start_at, timeout):
    """Distribute the workload with libtorrent peers (lt_peer.py).

    Starts the tracker on cluster.tracker and the seeder on
    cluster.upstream at once, a leecher per host of cluster.hosts adding
    the torrent at start_at. Before the peers are spawned the torrent is
    made (SHA-1 of the workload, ~2 s/GiB), and each peer needs ~0.2 s of
    CPU to load: set start_at >= 3 s + that ahead (late leechers are
    named in notes). Waits until every leecher completed or start_at + timeout,
    stops everything, checks the leechers' files; returns the dict
    described in the module doc. Raises RuntimeError if the tracker does
    not come up (everything started is stopped first).
    """
    return _run("lt", cluster, workload, piece_length, start_at, timeout)


def run_aria2(cluster, workload, piece_length, start_at, timeout):
    """Distribute the workload with aria2c peers; see run_libtorrent.

    Flags: ARIA2_FLAGS (everyone) and ARIA2_SEED_FLAGS (seeder). Every
    aria2c is exec'd at its start time by a small Python waiter. A
    leecher's completion time is written by its --on-bt-download-complete
    hook (run once every piece is verified, before seeding): a shell
    script in a temporary dir outside the hosts' dirs, which may be
    mounted noexec. The seeder's uploadLength is read over JSON-RPC just
    before the peers are stopped.
    """
    return _run("aria2", cluster, workload, piece_length, start_at, timeout)
