"""The emulated cluster: one network namespace per host, joined by veth pairs
to a bridge that lives in a namespace of its own, with `tc tbf` caps.

Every host namespace gets `eth0` (its end of a veth pair) with a 10.77.x.y
address and `lo`. Egress is shaped by a tbf qdisc on eth0; ingress is
redirected (u32 match-all filter, the only classifier this kernel has) to an
ifb device in the same namespace and shaped there by a second tbf. Nothing
is created in the caller's namespace: deleting the namespaces removes every
veth, ifb and qdisc with them.

Without root or network namespaces, `LoopbackCluster` stands in: every host
is 127.0.0.1 with ports of its own, and only the shoal agents' own rate
limits (and the pulling clients' read rate) emulate the caps.
"""

import json
import os
import signal
import socket
import subprocess
import time

PREFIX = "shoalbench"
BRIDGE_NET = "10.77"
MTU_PAYLOAD = 1448  # TCP payload per 1514-byte frame (timestamps on)
HEADER_BYTES = 66  # Ethernet 14 + IPv4 20 + TCP 32, per packet (or GSO skb)


def run(argv, check=True, **kw):
    """Runs a short command; raises with its stderr when it fails."""
    p = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), p.returncode,
                                                 (p.stderr or p.stdout).strip()))
    return p


def netns_available():
    """(True, "") when namespaces, veth, ifb and tbf all work here; else
    (False, why). Probes with a throw-away namespace pair."""
    if os.geteuid() != 0:
        return False, "not root"
    probe = "%s-probe%d" % (PREFIX, os.getpid())
    try:
        run(["ip", "netns", "add", probe])
        run(["ip", "-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1"])
        run(["ip", "-n", probe, "link", "add", "ifb0", "type", "ifb"])
        run(["ip", "-n", probe, "link", "set", "v0", "up"])
        run(["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "v0", "root", "tbf",
             "rate", "100mbit", "burst", "64k", "latency", "20ms"])
        run(["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "v0", "handle", "ffff:",
             "ingress"])
        run(["ip", "netns", "exec", probe, "tc", "filter", "add", "dev", "v0", "parent",
             "ffff:", "protocol", "all", "u32", "match", "u32", "0", "0", "action", "mirred",
             "egress", "redirect", "dev", "ifb0"])
        return True, ""
    except (RuntimeError, FileNotFoundError) as e:
        return False, str(e)
    finally:
        run(["ip", "netns", "del", probe], check=False)


def stale_namespaces():
    """Namespaces left by earlier runs whose harness process is gone."""
    out = run(["ip", "-j", "netns", "list"], check=False).stdout or "[]"
    stale = []
    for ns in json.loads(out or "[]"):
        name = ns.get("name", "")
        if not name.startswith(PREFIX):
            continue
        pid = name[len(PREFIX):].split("-")[0]
        if pid.isdigit() and not os.path.exists("/proc/%s" % pid):
            stale.append(name)
    return stale


def stop_processes(procs, grace=5.0):
    """SIGTERM every process in procs still running, SIGKILL what is left
    after grace seconds, and reap them all."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.time() + grace
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def kill_namespace_processes(ns):
    """TERM, then KILL, every process whose network namespace is ns."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(int(pid), sig)
            except (ProcessLookupError, ValueError):
                pass
        deadline = time.time() + 5
        while time.time() < deadline:
            if not run(["ip", "netns", "pids", ns], check=False).stdout.split():
                return
            time.sleep(0.1)


def remove_namespaces(names):
    for ns in names:
        kill_namespace_processes(ns)
        run(["ip", "netns", "del", ns], check=False)


def rate_bits(text):
    """'400mbit' / '1gbit' / '800kbit' / '1000000' (bit/s) -> bits per second."""
    t = str(text).strip().lower()
    for suffix, mult in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3), ("bit", 1)):
        if t.endswith(suffix):
            return int(float(t[:-len(suffix)]) * mult)
    return int(float(t))


class Host:
    """One emulated machine. popen() runs a command inside it."""

    def __init__(self, cluster, name, ns, ip, index):
        self.cluster = cluster
        self.name = name
        self.ns = ns
        self.ip = ip
        self.index = index
        self.dir = os.path.join(cluster.workdir, name)
        os.makedirs(self.dir, exist_ok=True)

    def argv(self, argv):
        return ["ip", "netns", "exec", self.ns] + list(argv) if self.ns else list(argv)

    def popen(self, argv, **kw):
        p = subprocess.Popen(self.argv(argv), **kw)
        self.cluster.procs.append(p)
        return p

    def port(self, base):
        """The port a service with this base port uses on this host: the same
        everywhere on the emulated network, spread out on loopback."""
        return base + self.cluster.port_offset(self)

    def counters(self):
        """(tx_bytes, tx_packets, rx_bytes, rx_packets) of eth0."""
        out = run(["ip", "-n", self.ns, "-s", "-j", "link", "show", "eth0"]).stdout
        st = json.loads(out)[0]["stats64"]
        return st["tx"]["bytes"], st["tx"]["packets"], st["rx"]["bytes"], st["rx"]["packets"]


class Cluster:
    """upstream + tracker + n agent hosts in namespaces, each capped to
    `rate` (the upstream to `upstream_rate`) in both directions."""

    emulated = True

    def __init__(self, n, rate, upstream_rate, workdir, burst=None, latency="25ms"):
        self.n = n
        self.rate = rate_bits(rate)
        self.upstream_rate = rate_bits(upstream_rate)
        self.workdir = workdir
        self.latency = latency
        self.burst = burst
        self.procs = []
        self.tag = "%s%d" % (PREFIX, os.getpid())
        self.bridge_ns = self.tag + "-br"
        self.namespaces = []
        self.upstream = self.tracker = None
        self.hosts = []

    def port_offset(self, host):
        return 0

    def _burst_for(self, rate):
        if self.burst:
            return self.burst
        # About 4 ms of traffic, at least 64 KiB: small enough to keep the
        # rate honest over a 25 ms window, large enough that GSO segments
        # pass without being split and tbf costs little CPU.
        return "%dk" % max(64, rate // 8 // 250 // 1024)

    def _shape(self, host, rate):
        burst = self._burst_for(rate)
        tbf = ["tbf", "rate", "%dbit" % rate, "burst", burst, "latency", self.latency]
        nsx = ["ip", "netns", "exec", host.ns]
        run(nsx + ["tc", "qdisc", "add", "dev", "eth0", "root"] + tbf)
        run(["ip", "-n", host.ns, "link", "add", "ifb0", "type", "ifb"])
        run(["ip", "-n", host.ns, "link", "set", "ifb0", "up"])
        run(nsx + ["tc", "qdisc", "add", "dev", "eth0", "handle", "ffff:", "ingress"])
        run(nsx + ["tc", "filter", "add", "dev", "eth0", "parent", "ffff:", "protocol", "all",
                   "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect",
                   "dev", "ifb0"])
        run(nsx + ["tc", "qdisc", "add", "dev", "ifb0", "root"] + tbf)

    def _add_host(self, name, ip, index, rate):
        ns = "%s-%s" % (self.tag, name)
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        veth = "v%d" % index
        run(["ip", "link", "add", veth, "netns", self.bridge_ns, "type", "veth", "peer", "name",
             "eth0", "netns", ns])
        run(["ip", "-n", self.bridge_ns, "link", "set", veth, "master", "br0", "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", ns, "addr", "add", "%s/16" % ip, "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        host = Host(self, name, ns, ip, index)
        self._shape(host, rate)
        return host

    def create(self):
        run(["ip", "netns", "add", self.bridge_ns])
        self.namespaces.append(self.bridge_ns)
        run(["ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", self.bridge_ns, "link", "set", "br0", "up"])
        self.upstream = self._add_host("upstream", BRIDGE_NET + ".0.1", 0, self.upstream_rate)
        self.tracker = self._add_host("tracker", BRIDGE_NET + ".0.2", 1, self.rate)
        for i in range(1, self.n + 1):
            self.hosts.append(self._add_host("h%d" % i, "%s.%d.%d" % (BRIDGE_NET, i // 250 + 1,
                                                                      i % 250), i + 1, self.rate))
        return self

    def describe(self):
        return ("%d agent hosts + upstream + tracker, each in its own network namespace on a "
                "bridge; tc tbf %s each way per host (ifb for ingress), upstream %s, "
                "burst %s, latency %s" % (self.n, fmt_rate(self.rate),
                                          fmt_rate(self.upstream_rate),
                                          self._burst_for(self.rate), self.latency))

    def stop_procs(self):
        stop_processes(self.procs)
        self.procs = []

    def destroy(self):
        self.stop_procs()
        remove_namespaces(reversed(self.namespaces))
        self.namespaces = []


class LoopbackHost(Host):
    def counters(self):
        return None


class LoopbackCluster(Cluster):
    """Every host on 127.0.0.1 with its own ports; no kernel shaping."""

    emulated = False

    def __init__(self, n, rate, upstream_rate, workdir, **_):
        super().__init__(n, rate, upstream_rate, workdir)
        # Below the kernel's ephemeral range (32768-60999 by default), where
        # any outgoing connection on the machine could hold one of our ports:
        # the highest port is base + 5090 + 7 * (hosts + 1) < 32768 for up to
        # 1000 hosts.
        self.base = 10000 + (os.getpid() % 500) * 20

    def port_offset(self, host):
        return self.base + host.index * 7

    def create(self):
        self.upstream = LoopbackHost(self, "upstream", None, "127.0.0.1", 0)
        self.tracker = LoopbackHost(self, "tracker", None, "127.0.0.1", 1)
        self.hosts = [LoopbackHost(self, "h%d" % i, None, "127.0.0.1", i + 1)
                      for i in range(1, self.n + 1)]
        for h in [self.upstream, self.tracker] + self.hosts:
            for base in (5000, 5001, 5080, 5081, 5082, 5090, 5092):
                _check_port_free(h.port(base))
        return self

    def describe(self):
        return ("LOOPBACK FALLBACK: %d agents on "
                "127.0.0.1; caps emulated only by the shoal agents' --ingress-rate/--egress-rate "
                "(%s) and the direct clients' read rate; the upstream is not capped"
                % (self.n, fmt_rate(self.rate)))

    def destroy(self):
        self.stop_procs()


def _check_port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    except OSError as e:
        raise RuntimeError("loopback fallback: port %d is in use (%s)" % (port, e))
    finally:
        s.close()


def fmt_rate(bits):
    if bits >= 10**9 and bits % 10**8 == 0:
        return "%g Gbit/s" % (bits / 1e9)
    return "%g Mbit/s" % (bits / 1e6)


def payload_bytes(before, after):
    """TCP payload sent between two counters() readings: frame bytes less one
    header per counted packet (a GSO super-packet is counted once, with one
    header, so this holds with and without segmentation offload)."""
    if before is None or after is None:
        return None
    return (after[0] - before[0]) - HEADER_BYTES * (after[1] - before[1])
