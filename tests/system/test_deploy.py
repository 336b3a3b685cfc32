"""deploy/: the Kubernetes manifests, the Helm chart, the alerts, the
Grafana dashboard, the systemd units, the example configs and the image
recipe, checked with the real tools (kubectl, promtool, systemd-analyze,
buildah) and against live agent and tracker processes."""

import copy
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest
import yaml

import helmlite
import k8sschema
from conftest import (REPO_ROOT, agent_bin, bin_dir, by_design, free_port, http_request,
                      need_tool, stop_process, tail, unavailable, under_asan, wait_for)

DEPLOY = os.path.join(REPO_ROOT, "deploy")
KUSTOMIZE_DIR = os.path.join(DEPLOY, "kubernetes")
CHART = os.path.join(DEPLOY, "helm", "shoal")
RULES = os.path.join(DEPLOY, "prometheus", "shoal-rules.yaml")
DASHBOARD = os.path.join(DEPLOY, "grafana", "shoal.json")
UNITS = os.path.join(DEPLOY, "systemd")
COMPONENTS = ["containerd-wiring", "monitoring", "redis", "pull-secrets"]

# Flags the deploy files use before the daemons have them (none now). A
# flag in this list that a binary already knows is fine; any other unknown
# flag fails test_every_flag_is_known.
PENDING_FLAGS = {
    "shoal-agent": set(),
    "shoal-tracker": set(),
}

# Metrics Prometheus makes itself for every target.
PROMETHEUS_SERIES = {"up"}


def tracker_bin():
    return os.path.join(bin_dir(), "shoal-tracker")


# ---------------------------------------------------------------- kustomize --

def kubectl():
    return need_tool("kubectl")


def kustomize_tree(tmp_path, components=()):
    """A copy of deploy/kubernetes with a cluster-secret file (never in git)
    and, with components, an overlay next to it that adds them. Returns the
    directory to build."""
    base = tmp_path / "kubernetes"
    shutil.copytree(KUSTOMIZE_DIR, str(base))
    (base / "cluster-secret").write_text(os.urandom(32).hex())
    if not components:
        return str(base)
    ov = tmp_path / "overlay"
    ov.mkdir()
    (ov / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["../kubernetes"],
        "components": ["../kubernetes/components/%s" % c for c in components]}))
    return str(ov)


def kustomize(path):
    r = subprocess.run([kubectl(), "kustomize", path], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "components" in r.stderr and "unknown field" in r.stderr:
        unavailable("this kubectl's embedded kustomize predates components (kustomize 3.7, "
                    "kubectl 1.21): %s" % r.stderr.strip(), fix="install kubectl 1.21 or later")
    assert r.returncode == 0, "kubectl kustomize %s failed:\n%s" % (path, r.stderr)
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def kubectl_decode(docs):
    """kubectl's offline decode of every object (--local: no API server);
    it names each object as kind/name."""
    text = yaml.safe_dump_all(docs)
    r = subprocess.run([kubectl(), "label", "--local", "-f", "-", "-o", "name",
                        "shoal.test/decoded=true"], input=text, capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, KUBECONFIG=os.devnull))
    assert r.returncode == 0, "kubectl could not decode the objects:\n%s" % r.stderr
    names = [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]
    want = ["%s/%s" % (d["kind"].lower(), d["metadata"]["name"]) for d in docs]
    assert len(names) == len(docs), "kubectl decoded %s, expected %s" % (names, want)
    for n, w in zip(names, want):
        kind, _, name = n.partition("/")
        assert kind.split(".")[0] == w.split("/")[0] and name == w.split("/", 1)[1], (n, w)


def schema_errors(docs):
    errors = []
    for d in docs:
        e = k8sschema.validate(d)
        if e is None:
            assert d["kind"] in ("ServiceMonitor", "PrometheusRule"), \
                "no schema for %s %s" % (d["apiVersion"], d["kind"])
            continue
        errors += e
    return errors


def by_kind(docs, kind, name=None):
    out = [d for d in docs if d["kind"] == kind and (name is None or
                                                      d["metadata"]["name"] == name)]
    return out


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def consistency_errors(docs):
    """Probes name declared ports, mounts name declared volumes, Services
    select a workload and target its ports, the Secret and ConfigMaps that
    pods mount exist."""
    errors = []
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    workloads = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet", "StatefulSet")]
    for w in workloads:
        spec = pod_spec(w)
        labels = w["spec"]["template"]["metadata"]["labels"]
        sel = w["spec"]["selector"]["matchLabels"]
        if any(labels.get(k) != v for k, v in sel.items()):
            errors.append("%s: selector does not match its pod labels" % w["metadata"]["name"])
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec.get("initContainers", []) + spec["containers"]:
            ports = {p["name"] for p in c.get("ports", []) if "name" in p}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                p = c.get(probe)
                if not p:
                    continue
                port = (p.get("httpGet") or p.get("tcpSocket") or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    errors.append("%s/%s: %s names port %s, not declared"
                                  % (w["metadata"]["name"], c["name"], probe, port))
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    errors.append("%s/%s: mounts undeclared volume %s"
                                  % (w["metadata"]["name"], c["name"], m["name"]))
        for v in volumes.values():
            if "secret" in v and ("Secret", v["secret"]["secretName"]) not in names:
                errors.append("%s: Secret %s does not exist" % (w["metadata"]["name"],
                                                                 v["secret"]["secretName"]))
            if "configMap" in v and ("ConfigMap", v["configMap"]["name"]) not in names:
                errors.append("%s: ConfigMap %s does not exist" % (w["metadata"]["name"],
                                                                    v["configMap"]["name"]))
    for s in by_kind(docs, "Service"):
        sel = s["spec"]["selector"]
        targets = [w for w in workloads if all(
            w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        if not targets:
            errors.append("Service %s selects no workload" % s["metadata"]["name"])
        for p in s["spec"]["ports"]:
            tp = p.get("targetPort")
            if isinstance(tp, str) and not any(
                    tp in {cp.get("name") for c in pod_spec(w)["containers"]
                           for cp in c.get("ports", [])} for w in targets):
                errors.append("Service %s: targetPort %s is no container port"
                              % (s["metadata"]["name"], tp))
    return errors


def check_manifests(docs):
    assert docs
    kubectl_decode(docs)
    errors = schema_errors(docs) + consistency_errors(docs)
    assert not errors, "\n".join(errors)


def test_kustomize_base_renders_and_validates(tmp_path):
    docs = kustomize(kustomize_tree(tmp_path))
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert [k for k, _ in kinds].count("Secret") == 1
    for kind, name in [("Namespace", "shoal"), ("DaemonSet", "shoal-agent"),
                       ("ConfigMap", "shoal-agent"), ("Service", "shoal-agent"),
                       ("Deployment", "shoal-tracker"), ("Service", "shoal-tracker"),
                       ("NetworkPolicy", "shoal-tracker")]:
        assert (kind, name) in kinds, "%s %s missing from %s" % (kind, name, kinds)
    check_manifests(docs)
    ds = by_kind(docs, "DaemonSet")[0]
    spec = pod_spec(ds)
    assert spec["hostNetwork"] is True
    agent = spec["containers"][0]
    assert "--advertise=$(HOST_IP):5081" in agent["args"]
    assert any(a.startswith("--cache-max-bytes=") for a in agent["args"])
    assert agent["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    cache = [v for v in spec["volumes"] if v["name"] == "cache"][0]
    assert cache["hostPath"]["path"] == "/var/lib/shoal"
    secret = by_kind(docs, "Secret")[0]["metadata"]["name"]
    for w in by_kind(docs, "DaemonSet") + by_kind(docs, "Deployment"):
        c = pod_spec(w)["containers"][0]
        assert "--cluster-secret-file=/etc/shoal/secret/cluster-secret" in c["args"]
        assert any(v.get("secret", {}).get("secretName") == secret for v in pod_spec(w)["volumes"])
    for w in by_kind(docs, "Deployment"):
        assert pod_spec(w)["securityContext"]["runAsNonRoot"] is True


def test_kustomize_without_secret_refuses(tmp_path):
    """No secret is shipped: rendering without one names the missing file."""
    base = tmp_path / "kubernetes"
    shutil.copytree(KUSTOMIZE_DIR, str(base))
    if (base / "cluster-secret").exists():
        (base / "cluster-secret").unlink()
    r = subprocess.run([kubectl(), "kustomize", str(base)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0 and "cluster-secret" in r.stderr


def test_kustomize_components_render_and_validate(tmp_path):
    docs = kustomize(kustomize_tree(tmp_path, COMPONENTS))
    check_manifests(docs)
    ds = by_kind(docs, "DaemonSet")[0]
    init = pod_spec(ds)["initContainers"][0]
    assert init["args"][:3] == ["configure", "containerd", "--all"]
    assert {"name": "containerd-config", "mountPath": "/etc/containerd"} in init["volumeMounts"]
    tracker = by_kind(docs, "Deployment", "shoal-tracker")[0]
    assert tracker["spec"]["replicas"] == 2
    assert "--state=redis://shoal-redis:6379/0" in pod_spec(tracker)["containers"][0]["args"]
    assert by_kind(docs, "Deployment", "shoal-redis") and by_kind(docs, "Service", "shoal-redis")
    assert by_kind(docs, "NetworkPolicy", "shoal-redis")
    assert by_kind(docs, "ServiceMonitor") and by_kind(docs, "PrometheusRule")
    agent = pod_spec(ds)["containers"][0]
    assert "--pull-secrets-dir=/etc/shoal/pull-secrets" in agent["args"]
    assert {"name": "pull-secrets", "mountPath": "/etc/shoal/pull-secrets",
            "readOnly": True} in agent["volumeMounts"]
    vol = [v for v in pod_spec(ds)["volumes"] if v["name"] == "pull-secrets"][0]
    assert vol["projected"]["sources"][0]["secret"] == {
        "name": "shoal-pull-secret",
        "items": [{"key": ".dockerconfigjson", "path": "shoal-pull-secret.json"}]}


def test_init_container_command_runs(tmp_path):
    """The containerd-wiring init container's exact arguments, with its
    /etc/containerd mount pointed at a temp dir, do what they say."""
    docs = kustomize(kustomize_tree(tmp_path / "k", ["containerd-wiring"]))
    init = pod_spec(by_kind(docs, "DaemonSet")[0])["initContainers"][0]
    etc = tmp_path / "etc-containerd"
    args = [a.replace("/etc/containerd", str(etc)) for a in init["args"]]
    for _ in range(2):
        r = subprocess.run([agent_bin()] + args, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
    assert "[host.\"http://127.0.0.1:5080\"]" in (etc / "certs.d" / "_default" / "hosts.toml").read_text()
    assert 'config_path = "%s/certs.d"' % etc in (etc / "config.toml").read_text()
    assert "unchanged" in r.stdout


# ------------------------------------------------------------------- flags --

def known_flags(binary):
    r = subprocess.run([binary, "--print-config-markdown"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return set(re.findall(r"`--([a-z0-9-]+)`", r.stdout))


def daemon_flags(args):
    return {a[2:].split("=", 1)[0] for a in args if a.startswith("--")}


def check_flags(binary, name, args, where):
    unknown = daemon_flags(args) - known_flags(binary) - PENDING_FLAGS[name]
    assert not unknown, "%s passes %s flags it does not know: %s" % (where, name, sorted(unknown))


def test_every_flag_is_known(tmp_path):
    """Every flag the manifests, the chart and the units pass exists (or is
    listed in PENDING_FLAGS, waiting for its feature)."""
    docs = kustomize(kustomize_tree(tmp_path / "k", COMPONENTS))
    docs += helm_docs(tmp_path / "h", ALL_VALUES)
    checked = 0
    for w in by_kind(docs, "DaemonSet") + by_kind(docs, "Deployment"):
        for c in pod_spec(w)["containers"]:
            if not re.search(r"/shoal:[^/]+$", c["image"]):
                continue
            # The image's entrypoint is shoal-agent.
            cmd = (c.get("command") or ["/usr/local/bin/shoal-agent"])[0]
            name = os.path.basename(cmd)
            binary = agent_bin() if name == "shoal-agent" else tracker_bin()
            check_flags(binary, name, c["args"], "%s/%s" % (w["metadata"]["name"], c["name"]))
            checked += 1
    assert checked >= 4
    for unit, name in (("shoal-agent.service", "shoal-agent"),
                       ("shoal-tracker.service", "shoal-tracker")):
        with open(os.path.join(UNITS, unit)) as f:
            execstart = re.search(r"^ExecStart=(.*)$", f.read(), re.M).group(1).split()
        binary = agent_bin() if name == "shoal-agent" else tracker_bin()
        check_flags(binary, name, execstart[1:], unit)


# --------------------------------------------------------------------- helm --

ALL_VALUES = {
    "agent": {"configureContainerd": {"enabled": True}, "pullSecrets": ["shoal-pull-secret"]},
    "tracker": {"replicas": 2},
    "redis": {"enabled": True},
    "monitoring": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
}


def helm_docs(tmp_path, values=None):
    """The chart rendered by `helm template` when helm is installed, else
    by tests/system/helmlite.py."""
    helm = shutil.which("helm")
    if not helm:
        return helmlite.render_chart(CHART, values)
    os.makedirs(str(tmp_path), exist_ok=True)
    vf = os.path.join(str(tmp_path), "values.yaml")
    with open(vf, "w") as f:
        yaml.safe_dump(values or {}, f)
    r = subprocess.run([helm, "template", "shoal", CHART, "--namespace", "shoal", "-f", vf],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


_HELM_ONLY_LABELS = ("app.kubernetes.io/instance", "app.kubernetes.io/managed-by",
                     "helm.sh/chart")


def _strip_labels(v):
    if isinstance(v, dict):
        return {k: _strip_labels(x) for k, x in v.items() if k not in _HELM_ONLY_LABELS}
    if isinstance(v, list):
        return [_strip_labels(x) for x in v]
    return v


def normalize(doc):
    """What must be equal between the chart and the plain manifests: all of
    an object but its labels, annotations, namespace, pull policy and the
    generated Secret's name suffix and contents."""
    d = copy.deepcopy(doc)
    d["metadata"] = {"name": re.sub(r"^(shoal-cluster-secret)-[a-z0-9]{10}$", r"\1",
                                    d["metadata"]["name"])}
    if d["kind"] == "Secret":
        d["data"] = sorted(d.get("data", {}))
        d.pop("type", None)
    if d["kind"] == "ConfigMap" and "agent.json" in d.get("data", {}):
        d["data"]["agent.json"] = json.loads(d["data"]["agent.json"])
    spec = d.get("spec", {})
    tmpl = spec.get("template")
    if tmpl:
        tmpl["metadata"].pop("annotations", None)
        for c in tmpl["spec"].get("containers", []) + tmpl["spec"].get("initContainers", []):
            c.pop("imagePullPolicy", None)
        for v in tmpl["spec"].get("volumes", []):
            if "secret" in v:
                v["secret"]["secretName"] = re.sub(r"-[a-z0-9]{10}$", "",
                                                   v["secret"]["secretName"])
    return _strip_labels(d)


def compare_chart_with_kustomize(kdocs, hdocs):
    k = {(d["kind"], d["metadata"]["name"]): normalize(d) for d in kdocs
         if d["kind"] != "Namespace"}
    h = {(d["kind"], d["metadata"]["name"]): normalize(d) for d in hdocs}
    k = {(kind, re.sub(r"-[a-z0-9]{10}$", "", n) if kind == "Secret" else n): v
         for (kind, n), v in k.items()}
    assert sorted(k) == sorted(h), "kinds and names differ:\nkustomize %s\nhelm      %s" % (
        sorted(k), sorted(h))
    diffs = []
    for key in sorted(k):
        if k[key] != h[key]:
            diffs.append("%s %s:\n  kustomize: %s\n  helm:      %s" % (
                key[0], key[1], json.dumps(k[key], sort_keys=True),
                json.dumps(h[key], sort_keys=True)))
    assert not diffs, "the chart and deploy/kubernetes drifted apart:\n" + "\n".join(diffs)


def test_helm_chart_defaults_match_plain_manifests(tmp_path):
    hdocs = helm_docs(tmp_path / "h")
    check_manifests(hdocs)
    compare_chart_with_kustomize(kustomize(kustomize_tree(tmp_path / "k")), hdocs)


def test_helm_chart_options_match_components(tmp_path):
    hdocs = helm_docs(tmp_path / "h", ALL_VALUES)
    check_manifests(hdocs)
    compare_chart_with_kustomize(kustomize(kustomize_tree(tmp_path / "k", COMPONENTS)), hdocs)


def test_helm_chart_values(tmp_path):
    """Values reach the objects; a memory-state tracker is never doubled."""
    docs = helm_docs(tmp_path / "h", {
        "image": {"repository": "reg.local/shoal", "tag": "9.9"},
        "agent": {"cache": {"maxGiB": 100, "hostPath": "/data/shoal"},
                  "extraArgs": ["--swarm-max-peers=8"],
                  "env": [{"name": "HTTPS_PROXY", "value": "http://proxy.local:3128"}]},
        "clusterSecret": {"existingSecret": "mine"},
        "networkPolicy": {"enabled": False},
        "monitoring": {"grafanaDashboard": {"enabled": True},
                       "prometheusRule": {"enabled": True}}})
    check_manifests(docs + [{"apiVersion": "v1", "kind": "Secret",
                             "metadata": {"name": "mine"}}])
    ds = by_kind(docs, "DaemonSet")[0]
    c = pod_spec(ds)["containers"][0]
    assert c["image"] == "reg.local/shoal:9.9"
    assert "--cache-max-bytes=100GiB" in c["args"] and c["args"][-1] == "--swarm-max-peers=8"
    assert {"name": "HTTPS_PROXY", "value": "http://proxy.local:3128"} in c["env"]
    assert [v for v in pod_spec(ds)["volumes"] if v["name"] == "cache"][0]["hostPath"]["path"] \
        == "/data/shoal"
    assert not by_kind(docs, "Secret") and not by_kind(docs, "NetworkPolicy")
    rule = by_kind(docs, "PrometheusRule")[0]
    near_full = [r for g in rule["spec"]["groups"] for r in g["rules"]
                 if r.get("alert") == "ShoalCacheNearFull"][0]
    assert str(100 * 1073741824) in near_full["expr"]
    dash = by_kind(docs, "ConfigMap", "shoal-dashboard")[0]
    with open(DASHBOARD) as f:
        assert json.loads(dash["data"]["shoal.json"]) == json.load(f)
    if not shutil.which("helm"):
        msg = helmlite.fail_message(CHART, {"tracker": {"replicas": 3}})
        assert msg and "redis.enabled" in msg


def test_chart_dashboard_is_the_grafana_dashboard():
    with open(DASHBOARD, "rb") as a, open(os.path.join(CHART, "dashboards", "shoal.json"),
                                          "rb") as b:
        assert a.read() == b.read(), "copy deploy/grafana/shoal.json to the chart's dashboards/"


# ------------------------------------------------------ alerts and metrics --

def rule_groups_from_kustomize():
    with open(os.path.join(KUSTOMIZE_DIR, "components", "monitoring",
                           "prometheusrule.yaml")) as f:
        return yaml.safe_load(f)["spec"]["groups"]


def test_prometheus_rules_pass_promtool(tmp_path):
    promtool = need_tool("promtool")
    with open(RULES) as f:
        groups = yaml.safe_load(f)["groups"]
    assert rule_groups_from_kustomize() == groups, \
        "the PrometheusRule's spec.groups differ from deploy/prometheus/shoal-rules.yaml"
    extracted = tmp_path / "rules.yaml"
    extracted.write_text(yaml.safe_dump({"groups": rule_groups_from_kustomize()}))
    for path in (RULES, str(extracted)):
        r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, "promtool check rules %s:\n%s%s" % (path, r.stdout, r.stderr)
    alerts = [r["alert"] for g in groups for r in g["rules"]]
    for want in ("ShoalAgentDown", "ShoalUpstreamErrors", "ShoalServingStaleTags",
                 "ShoalCacheNearFull", "ShoalSwarmFallingBack", "ShoalPieceHashFailures"):
        assert want in alerts
    # Every alert is explained in the operations guide.
    with open(os.path.join(REPO_ROOT, "docs", "operations.md")) as f:
        ops = f.read()
    section = ops[ops.index("## Alerts: what each means and what to do"):]
    for a in alerts:
        assert "`%s`" % a in section, "docs/operations.md does not explain %s" % a


_PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "inf", "nan",
}


def promql_metrics(expr):
    """Metric names in a PromQL expression."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"(?<![A-Za-z_:])\d+(\.\d+)?([eE][-+]?\d+)?", " ", e)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("(") or m.group(0) in _PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


def test_promql_metric_extraction():
    assert promql_metrics('sum by (job, instance) (rate(shoal_a_total{code=~"5.."}[5m])) / '
                          'clamp_min(sum(increase(shoal_b[1h])), 1e-9) > 0.95 * 2147') == \
        {"shoal_a_total", "shoal_b"}
    assert promql_metrics('up{job="shoal-agent"} == 0') == {"up"}


class Daemon:
    def __init__(self, argv, port, workdir, health="/_shoal/health", admin_port=None):
        self.port = port
        self.admin_port = admin_port
        self.log = os.path.join(workdir, os.path.basename(argv[0]) + ".log")
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=workdir)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("%s exited: %s" % (argv[0], tail(self.log)))
            try:
                return http_request(port, "GET", health, timeout=2)[0] == 200
            except OSError:
                return False
        wait_for(up, 15, "%s on port %d" % (argv[0], port))

    def stop(self):
        return stop_process(self.proc)


@pytest.fixture
def live(tmp_path):
    """A tracker and an agent in a swarm with it, on loopback ports."""
    need_tool(tracker_bin())
    secret = tmp_path / "secret"
    secret.write_text(os.urandom(32).hex())
    tport, aport, pport = free_port(), free_port(), free_port()
    tadmin, aadmin = free_port(), free_port()
    started = []
    try:
        t = Daemon([tracker_bin(), "--listen", "127.0.0.1:%d" % tport, "--cluster-secret-file",
                    str(secret), "--log-level", "warn", "--admin-listen",
                    "127.0.0.1:%d" % tadmin], tport, str(tmp_path), admin_port=tadmin)
        started.append(t)
        a = Daemon([agent_bin(), "--listen", "127.0.0.1:%d" % aport, "--data-dir",
                    str(tmp_path / "data"), "--upstream", "http://127.0.0.1:1",
                    "--tracker", "http://127.0.0.1:%d" % tport, "--cluster-secret-file",
                    str(secret), "--peer-listen", "127.0.0.1:%d" % pport, "--advertise",
                    "127.0.0.1:%d" % pport, "--log-level", "warn", "--admin-listen",
                    "127.0.0.1:%d" % aadmin], aport, str(tmp_path), admin_port=aadmin)
        started.append(a)
        # One answered request, so the per-status counter has a sample.
        http_request(aport, "GET", "/v2/")
        yield {"agent": a, "tracker": t}
    finally:
        for d in started:
            d.stop()


def metrics_url(daemon):
    """Where Prometheus scrapes a daemon: its admin listener (the ServiceMonitor,
    the scrape annotations and the units all name the admin port)."""
    return daemon.admin_port, "/metrics"


def scrape(daemon):
    port, path = metrics_url(daemon)
    st, _, body = http_request(port, "GET", path, timeout=10)
    assert st == 200
    return body.decode()


def exported_names(text):
    names = set()
    for ln in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", ln)
        if m:
            names.add(m.group(1))
            if m.group(2) in ("histogram", "summary"):
                names |= {m.group(1) + s for s in ("_bucket", "_sum", "_count")}
        elif ln and not ln.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", ln).group(0))
    return names


def test_promtool_check_metrics_on_live_daemons(live):
    promtool = need_tool("promtool")
    for name, d in live.items():
        text = scrape(d)
        assert "# TYPE" in text
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, "promtool check metrics on the %s:\n%s%s" % (
            name, r.stdout, r.stderr)


def test_dashboard_and_alerts_name_exported_metrics(live):
    exported = exported_names(scrape(live["agent"])) | exported_names(scrape(live["tracker"]))
    assert "shoal_cache_bytes" in exported and "shoal_tracker_announces_total" in exported
    with open(DASHBOARD) as f:
        dash = json.load(f)
    queries = [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]
    assert len(queries) >= 20
    with open(RULES) as f:
        queries += [(r["alert"], r["expr"]) for g in yaml.safe_load(f)["groups"]
                    for r in g["rules"]]
    missing = []
    for where, expr in queries:
        names = promql_metrics(expr)
        assert names, "%s: no metric in %r" % (where, expr)
        for n in names - exported - PROMETHEUS_SERIES:
            missing.append("%s: %s" % (where, n))
    assert not missing, "metrics no daemon exports:\n" + "\n".join(missing)


# ------------------------------------------------------------------ configs --

def test_example_configs_start_the_daemons(tmp_path):
    """deploy/config/*.json and the Kubernetes ConfigMap's agent.json are
    valid configs: the daemons start with them. Listen addresses and paths
    are overridden to stay on loopback and in a temp dir; the files the
    swarm example names under /etc/shoal are made in the temp dir."""
    need_tool(tracker_bin())
    etc = tmp_path / "etc-shoal"
    etc.mkdir()
    (etc / "cluster-secret").write_text(os.urandom(16).hex())
    (etc / "registry.example.internal.password").write_text("robot-password\n")
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", str(etc / "registry-ca.pem"))
    with open(os.path.join(KUSTOMIZE_DIR, "agent.yaml")) as f:
        cm = [d for d in yaml.safe_load_all(f) if d and d["kind"] == "ConfigMap"][0]
    configs = {"configmap.json": cm["data"]["agent.json"]}
    for name in ("agent.json", "agent-swarm.json", "tracker.json"):
        with open(os.path.join(DEPLOY, "config", name)) as f:
            configs[name] = f.read().replace("/etc/shoal/", str(etc) + "/")
    for name, text in configs.items():
        (tmp_path / name).write_text(text)
    for i, name in enumerate(("agent.json", "agent-swarm.json", "configmap.json")):
        port, pport = free_port(), free_port()
        d = Daemon([agent_bin(), "--config", str(tmp_path / name), "--listen",
                    "127.0.0.1:%d" % port, "--admin-listen", "127.0.0.1:%d" % free_port(),
                    "--data-dir", str(tmp_path / ("data%d" % i)),
                    "--peer-listen", "127.0.0.1:%d" % pport, "--advertise",
                    "127.0.0.1:%d" % pport, "--tracker", "http://127.0.0.1:1",
                    # as the DaemonSet passes it (a swarm needs the secret)
                    "--cluster-secret-file", str(etc / "cluster-secret")],
                   port, str(tmp_path))
        assert d.stop() == 0, tail(d.log)
    port = free_port()
    d = Daemon([tracker_bin(), "--config", str(tmp_path / "tracker.json"), "--listen",
                "127.0.0.1:%d" % port, "--admin-listen", "127.0.0.1:%d" % free_port()],
               port, str(tmp_path))
    assert d.stop() == 0, tail(d.log)


# ------------------------------------------------------------------ systemd --

def unit_copies(tmp_path):
    """The units with /usr/local/bin/ pointed at the binaries under test:
    systemd-analyze verify checks that ExecStart names an executable."""
    out = []
    for name in sorted(os.listdir(UNITS)):
        if not name.endswith(".service"):
            continue
        with open(os.path.join(UNITS, name)) as f:
            text = f.read().replace("/usr/local/bin/", bin_dir() + "/")
        p = tmp_path / name
        p.write_text(text)
        out.append(str(p))
    return out


def test_systemd_units_verify(tmp_path):
    sa = need_tool("systemd-analyze")
    units = unit_copies(tmp_path)
    assert len(units) == 3
    for u in units:
        r = subprocess.run([sa, "verify", u], capture_output=True, text=True, timeout=60,
                           cwd=str(tmp_path))
        # verify exits 0 on unknown keys and bad values, but says so on stderr.
        assert r.returncode == 0 and not r.stderr.strip(), \
            "systemd-analyze verify %s:\n%s%s" % (os.path.basename(u), r.stdout, r.stderr)
        r = subprocess.run([sa, "security", "--offline=yes", "--threshold=20", u],
                           capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
        assert r.returncode == 0, "%s is exposed more than 2.0:\n%s" % (
            os.path.basename(u), r.stdout[-3000:])
    with open(os.path.join(UNITS, "shoal-agent.service")) as f:
        agent = f.read()
    for want in ("ProtectSystem=strict", "NoNewPrivileges=yes", "ReadWritePaths=/var/lib/shoal",
                 "PrivateTmp=yes", "ProtectHome=yes"):
        assert want in agent
    with open(os.path.join(UNITS, "shoal-containerd-wiring.service")) as f:
        assert "ReadWritePaths=/etc/containerd" in f.read()


def test_wiring_unit_commands_run(tmp_path):
    """The containerd-wiring unit's ExecStart and ExecStop, aimed at a temp
    dir: configure, then unconfigure back to nothing."""
    with open(os.path.join(UNITS, "shoal-containerd-wiring.service")) as f:
        text = f.read()
    start = re.search(r"^ExecStart=(.*)$", text, re.M).group(1).split()
    stop = re.search(r"^ExecStop=(.*)$", text, re.M).group(1).split()
    extra = ["--config-dir", str(tmp_path / "certs.d"), "--containerd-config",
             str(tmp_path / "config.toml")]
    r = subprocess.run([agent_bin()] + start[1:] + extra, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "certs.d" / "_default" / "hosts.toml").exists()
    r = subprocess.run([agent_bin()] + stop[1:] + extra, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert os.listdir(str(tmp_path / "certs.d")) == [] and not (tmp_path / "config.toml").exists()


# -------------------------------------------------------------------- image --

def _cannot_build(why):
    unavailable("the image recipe cannot be built here: %s" % why)


def _debian_mirror():
    """The host's Debian mirror (apt's deb822 or one-line sources)."""
    for p in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        try:
            with open(p) as f:
                text = f.read()
        except OSError:
            continue
        m = re.search(r"^URIs:\s*(\S+)", text, re.M) or \
            re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+\S+\s+main", text, re.M)
        if m and "security" not in m.group(1):
            return m.group(1)
    return None


@pytest.mark.image
@by_design(under_asan(), "the image is built from source, not from the binaries under test: "
           "it runs in the normal pass")
def test_image_recipe_builds(tmp_path):
    """buildah builds deploy/Containerfile. No container registry is
    reachable here, so the debian:12 and debian:12-slim bases are made with
    debootstrap from the host's Debian mirror (the recipe's apt-get steps
    use the same mirror); the image's binaries then run inside it."""
    if os.geteuid() != 0:
        _cannot_build("buildah and debootstrap need root")
    buildah = shutil.which("buildah")
    podman = shutil.which("podman")
    debootstrap = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if os.access("/usr/sbin/debootstrap", os.X_OK) else None)
    if not (buildah and podman and debootstrap):
        _cannot_build("needs buildah, podman and debootstrap (deploy/install-deps.sh)")
    mirror = _debian_mirror()
    if not mirror:
        _cannot_build("no Debian mirror in /etc/apt")
    store = tempfile.mkdtemp(prefix="shoal-img-", dir="/var/tmp")
    try:
        root = os.path.join(store, "rootfs")
        r = subprocess.run([debootstrap, "--variant=minbase", "bookworm", root, mirror],
                           capture_output=True, text=True, timeout=1200)
        if r.returncode != 0:
            _cannot_build("debootstrap from %s failed: %s" % (mirror, (r.stdout + r.stderr)[-800:]))
        opts = ["--root", os.path.join(store, "storage"), "--runroot", os.path.join(store, "run"),
                "--storage-driver", "vfs"]
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        r = subprocess.run([podman] + opts + ["import", "-", "docker.io/library/debian:12"],
                           stdin=tar.stdout, capture_output=True, text=True, timeout=600)
        tar.stdout.close()
        tar.wait()
        assert r.returncode == 0, r.stderr
        r = subprocess.run([podman] + opts + ["tag", "docker.io/library/debian:12",
                                              "docker.io/library/debian:12-slim"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([buildah] + opts + ["bud", "--isolation", "chroot", "--pull-never",
                                               "-f", os.path.join(DEPLOY, "Containerfile"),
                                               "-t", "localhost/shoal:test", REPO_ROOT],
                           capture_output=True, text=True, timeout=2400)
        assert r.returncode == 0, "buildah bud failed:\n%s" % (r.stdout + r.stderr)[-4000:]
        r = subprocess.run([buildah] + opts + ["from", "--pull-never", "localhost/shoal:test"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        ctr = r.stdout.strip().splitlines()[-1]

        def run_in(*cmd):
            return subprocess.run([buildah] + opts + ["run", "--isolation", "chroot", ctr, "--"]
                                  + list(cmd), capture_output=True, text=True, timeout=120)
        for b in ("shoal-agent", "shoal-tracker", "shoalctl"):
            r = run_in("/usr/local/bin/" + b, "--help")
            assert r.returncode == 0 and "usage" in (r.stdout + r.stderr).lower(), \
                "%s --help in the image: %s%s" % (b, r.stdout, r.stderr)
        r = run_in("id", "-u")
        assert r.stdout.strip() == "10001", "the image's user: %r" % r.stdout
        r = run_in("id", "-gn")
        assert r.stdout.strip() == "shoal"
        r = run_in("/usr/local/bin/shoal-agent", "configure", "podman", "--registry",
                   "docker.io", "--config-dir", "/tmp/wiring")
        assert r.returncode == 0 and "wrote /tmp/wiring/shoal.conf" in r.stdout, r.stderr
        # Only runtime libraries: no compiler in the run stage.
        r = run_in("sh", "-c", "command -v cc gcc cmake || echo none")
        assert r.stdout.strip() == "none"
        r = subprocess.run([buildah] + opts + ["inspect", "--format",
                                               "{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}}",
                                               ctr], capture_output=True, text=True, timeout=60)
        assert r.stdout.strip() == "10001:10001 [/usr/local/bin/shoal-agent]"
        subprocess.run([buildah] + opts + ["rm", ctr], capture_output=True, timeout=120)
    finally:
        shutil.rmtree(store, ignore_errors=True)
