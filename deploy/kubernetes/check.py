#!/usr/bin/env python3
"""Checks the Kubernetes manifests in deploy/kubernetes.

For every overlay in deploy/kubernetes/overlays:

1. renders it with `kubectl kustomize`;
2. validates every object with `kubernetes-validate --strict` against
   Kubernetes 1.30 and the newest version kubernetes-validate knows
   (installed into a venv: target/venv-k8s, or $SIPBUS_K8S_VENV);
3. checks the invariants the manifests promise (probes, resources, a
   restricted securityContext, preStop and a grace period that covers
   shutdown.drain_s, a PodDisruptionBudget and spreading over nodes for
   every workload, HorizontalPodAutoscalers, NetworkPolicies, one image,
   bus.edges naming every edge replica, ...);
4. runs `sipbus --check-config` for every sipbus container as it would
   start: the rendered sipbus.toml written where the container mounts it,
   the container's args and environment (Secrets with sample values, fields
   of the pod with sample values).

Usage: deploy/kubernetes/check.py [--overlay NAME ...] [--strip-keys admin,shutdown]

Environment: SIPBUS_BIN (default target/debug/sipbus), SIPBUS_K8S_VENV
(default target/venv-k8s), SIPBUS_K8S_VALIDATE (the pip requirement,
default kubernetes-validate==1.37.0), KUBECTL (default kubectl).
Exits 1 when anything fails, naming overlay, workload and container.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OVERLAYS = HERE / "overlays"
VENV = Path(os.environ.get("SIPBUS_K8S_VENV", ROOT / "target" / "venv-k8s"))
REQUIREMENT = os.environ.get("SIPBUS_K8S_VALIDATE", "kubernetes-validate==1.37.0")
SIPBUS_BIN = os.environ.get("SIPBUS_BIN", str(ROOT / "target" / "debug" / "sipbus"))
KUBECTL = os.environ.get("KUBECTL", "kubectl")
OLDEST = "1.30.0"

NAMESPACE = "sipbus"
RUN_AS_USER = 10001
ADMIN_PORT = 9090
GRPC_PORT = 50051
REDIS_PORT = 6379
SIP_PORTS = {5060, 5061, 8443}
SPLIT_TARGETS = {"sip-edge", "registrar-svc", "session-svc", "sdp-svc", "pubsub-svc", "publish-svc"}
STORE_TARGETS = SPLIT_TARGETS - {"sip-edge"}
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")

# Sample values for the Secrets the operator creates (README.md says how).
SECRET_SAMPLES = {
    ("sipbus-users", "users"): '[{user="alice",password="alice-sample"},{user="bob",password="bob-sample"}]',
    ("sipbus-auth", "nonce-key"): "k8s-check-sample-nonce-key",
    ("sipbus-auth", "registry-token"): "k8s-check-sample-registry-token",
}
# Sample values for the pod's fields.
FIELD_SAMPLES = {
    "metadata.namespace": NAMESPACE,
    "spec.nodeName": "node-a",
    "status.hostIP": "10.1.2.3",
    "status.podIP": "10.1.2.4",
}


class Failures:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{where}: {what}")


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# ---------------------------------------------------------------- the venv


def venv_python() -> Path:
    python = VENV / "bin" / "python"
    marker = VENV / ".sipbus-requirement"
    if python.exists() and marker.exists() and marker.read_text() == REQUIREMENT:
        return python
    if not python.exists():
        print(f"creating {VENV}", flush=True)
        r = run([sys.executable, "-m", "venv", str(VENV)])
        if r.returncode:
            sys.exit(f"python3 -m venv {VENV} failed (Debian: apt-get install python3-venv):\n{r.stderr}")
    print(f"installing {REQUIREMENT} into {VENV}", flush=True)
    r = run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", REQUIREMENT])
    if r.returncode:
        sys.exit(f"pip install {REQUIREMENT} failed:\n{r.stdout}{r.stderr}")
    marker.write_text(REQUIREMENT)
    return python


def validator_versions(python: Path) -> tuple[str, list[str]]:
    r = run([str(python), "-c", "import kubernetes_validate.utils as u, kubernetes_validate.version as v;"
             "print(v.__version__); print(u.latest_version())"])
    if r.returncode:
        sys.exit(f"kubernetes-validate does not load:\n{r.stderr}")
    own, latest = r.stdout.split()
    return own, sorted({OLDEST, latest}, key=lambda v: tuple(int(x) for x in v.split(".")))


def to_json(python: Path, rendered: str) -> list[dict]:
    code = "import sys, json, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)"
    r = run([str(python), "-c", code], input=rendered)
    if r.returncode:
        raise RuntimeError(f"rendered YAML does not parse: {r.stderr}")
    return json.loads(r.stdout)


# ------------------------------------------------------------- small helpers


def name_of(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def selects(selector: dict | None, labels: dict) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against labels."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def is_sipbus(container: dict) -> bool:
    command = container.get("command") or []
    return bool(command) and os.path.basename(command[0]) == "sipbus"


def target_of(container: dict) -> str:
    args = container.get("args") or []
    for i, a in enumerate(args):
        if a in ("--target", "-t") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--target="):
            return a.split("=", 1)[1]
    return "all"


def config_path_of(container: dict) -> str | None:
    args = container.get("args") or []
    for i, a in enumerate(args):
        if a in ("--config", "-c") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def prestop_seconds(container: dict) -> int | None:
    pre = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre:
        return int(pre["sleep"]["seconds"])
    command = (pre.get("exec") or {}).get("command") or []
    if len(command) == 2 and os.path.basename(command[0]) == "sleep" and command[1].isdigit():
        return int(command[1])
    return None


def port_number(container: dict, port) -> int | None:
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p["containerPort"]
    return int(port) if str(port).isdigit() else None


def pod_name(workload: dict) -> str:
    name = workload["metadata"]["name"]
    return {"StatefulSet": f"{name}-0", "DaemonSet": f"{name}-x7k2q"}.get(workload["kind"], f"{name}-5d8f7c9b4-x7k2q")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables only, $$ escapes."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


def strip_sections(text: str, keys: list[str]) -> str:
    """Removes the TOML tables [key] and [key.*] (testing an older binary)."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        m = re.match(r"\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?$", line)
        if m:
            skipping = m.group(1).split(".")[0] in keys
        if not skipping:
            out.append(line)
    return "".join(out)


_sample_tls: tuple[str, str] | None = None


def sample_tls() -> tuple[str, str]:
    """A self-signed certificate and key (openssl), or placeholders."""
    global _sample_tls
    if _sample_tls is None:
        _sample_tls = ("sample certificate\n", "sample key\n")
        if shutil.which("openssl"):
            with tempfile.TemporaryDirectory() as d:
                r = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                         "-nodes", "-days", "2", "-subj", "/CN=sip.example.com",
                         "-keyout", f"{d}/k", "-out", f"{d}/c"])
                if r.returncode == 0:
                    _sample_tls = (Path(f"{d}/c").read_text(), Path(f"{d}/k").read_text())
    return _sample_tls


# ------------------------------------------------------------- invariants


def check_objects(overlay: str, objs: list[dict], fail: Failures) -> dict:
    """Invariants of the rendered objects; returns facts for later checks."""
    where = overlay
    by_kind: dict[str, list[dict]] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    namespaces = [o["metadata"]["name"] for o in by_kind.get("Namespace", [])]
    if namespaces != [NAMESPACE]:
        fail.add(where, f"expected one Namespace {NAMESPACE}, found {namespaces}")
    for o in objs:
        if o["kind"] != "Namespace" and o["metadata"].get("namespace") != NAMESPACE:
            fail.add(where, f"{name_of(o)} is not in namespace {NAMESPACE}")

    configmaps = {o["metadata"]["name"]: o.get("data") or {} for o in by_kind.get("ConfigMap", [])}
    pdbs = by_kind.get("PodDisruptionBudget", [])
    policies = by_kind.get("NetworkPolicy", [])
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    workloads = [o for k in WORKLOADS for o in by_kind.get(k, [])]
    if not workloads:
        fail.add(where, "no workloads rendered")
    images = set()
    targets = []

    for w in workloads:
        ww = f"{where}/{name_of(w)}"
        spec = w["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels") or {}
        if not selects(spec.get("selector"), labels):
            fail.add(ww, "selector does not select its own pod template")
        psc = pod.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True or psc.get("runAsUser") != RUN_AS_USER:
            fail.add(ww, f"pod securityContext needs runAsNonRoot: true, runAsUser: {RUN_AS_USER}")
        if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            fail.add(ww, "pod securityContext needs seccompProfile RuntimeDefault")
        if pod.get("automountServiceAccountToken") is not False:
            fail.add(ww, "automountServiceAccountToken must be false (no pod talks to the API server)")
        if pod.get("enableServiceLinks") is not False:
            fail.add(ww, "enableServiceLinks must be false (service links add *_PORT variables; "
                         "sipbus reads SIPBUS_* ones as configuration)")
        if w["kind"] != "DaemonSet":
            spread = [t for t in pod.get("topologySpreadConstraints") or []
                      if t.get("topologyKey") == "kubernetes.io/hostname" and selects(t.get("labelSelector"), labels)]
            if not spread:
                fail.add(ww, "needs a topologySpreadConstraint over kubernetes.io/hostname selecting its pods")
        if not [p for p in pdbs if selects(p["spec"].get("selector"), labels)]:
            fail.add(ww, "no PodDisruptionBudget selects its pods")
        if not [p for p in policies if selects(p["spec"].get("podSelector"), labels)
                and (p["spec"].get("ingress") or [])]:
            fail.add(ww, "no NetworkPolicy lets anything reach its pods")
        grace = pod.get("terminationGracePeriodSeconds")
        for c in pod.get("containers") or []:
            cc = f"{ww}/{c['name']}"
            for probe in ("readinessProbe", "livenessProbe"):
                if not c.get(probe):
                    fail.add(cc, f"no {probe}")
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(kind) or {}):
                        fail.add(cc, f"resources.{kind}.{r} missing")
            sc = c.get("securityContext") or {}
            want = {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False}
            for k, v in want.items():
                if sc.get(k) != v:
                    fail.add(cc, f"securityContext.{k} must be {json.dumps(v)}")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                fail.add(cc, "securityContext.capabilities.drop must hold ALL")
            if (sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
                fail.add(cc, "securityContext.seccompProfile must be RuntimeDefault")
            pre = prestop_seconds(c)
            if pre is None:
                fail.add(cc, "no preStop sleep (endpoints must forget the pod before SIGTERM)")
            if grace is None:
                fail.add(ww, "terminationGracePeriodSeconds missing")
            if not is_sipbus(c):
                if pre is not None and grace is not None and grace < pre + 10:
                    fail.add(cc, f"terminationGracePeriodSeconds {grace} < preStop {pre} + 10")
                continue
            images.add(c.get("image"))
            target = target_of(c)
            targets.append(target)
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
                get = (c.get(probe) or {}).get("httpGet") or {}
                if get.get("path") != path or port_number(c, get.get("port")) != ADMIN_PORT:
                    fail.add(cc, f"{probe} must be httpGet {path} on the admin port {ADMIN_PORT}")
            if not [p for p in c.get("ports") or [] if p.get("name") == "metrics" and p["containerPort"] == ADMIN_PORT]:
                fail.add(cc, f"needs a containerPort {ADMIN_PORT} named metrics")
            notes = spec["template"]["metadata"].get("annotations") or {}
            if notes.get("prometheus.io/scrape") != "true" or notes.get("prometheus.io/port") != str(ADMIN_PORT):
                fail.add(ww, "pod annotations prometheus.io/scrape and prometheus.io/port missing")
            volumes = {v["name"]: v for v in pod.get("volumes") or []}
            config = load_config(c, volumes, configmaps)
            if config is None:
                fail.add(cc, "its --config file is not a key of a rendered ConfigMap it mounts")
                continue
            drain = (config.get("shutdown") or {}).get("drain_s")
            if drain is None:
                fail.add(cc, "shutdown.drain_s is not set in sipbus.toml")
            elif pre is not None and grace != pre + drain + 10:
                fail.add(ww, f"terminationGracePeriodSeconds is {grace}, expected preStop {pre} + "
                             f"shutdown.drain_s {drain} + 10 = {pre + drain + 10}")
            listen = env_literal(c, "SIPBUS_ADMIN__LISTEN") or (config.get("admin") or {}).get("listen", "")
            if not listen.endswith(f":{ADMIN_PORT}"):
                fail.add(cc, f"admin.listen `{listen}` is not on port {ADMIN_PORT}")
            labelled = labels.get("sipbus/store") == "client"
            if labelled != (target in STORE_TARGETS):
                fail.add(ww, "label sipbus/store=client belongs on exactly the split services (they reach Redis)")
            if target == "sip-edge":
                check_edges(ww, w, c, config, fail)

    if len(images) > 1:
        fail.add(where, f"sipbus containers use different images {sorted(images)}: one `images:` line should set all")
    if targets and set(targets) != {"all"} and set(targets) != SPLIT_TARGETS:
        fail.add(where, f"targets {sorted(set(targets))}: a split overlay runs each of {sorted(SPLIT_TARGETS)}")

    # HorizontalPodAutoscalers own their Deployment's replica count.
    workload_names = {(w["kind"], w["metadata"]["name"]): w for w in workloads}
    for h in hpas:
        ref = h["spec"]["scaleTargetRef"]
        w = workload_names.get((ref["kind"], ref["name"]))
        if w is None:
            fail.add(where, f"{name_of(h)} scales {ref['kind']}/{ref['name']}, which is not rendered")
        elif "replicas" in w["spec"]:
            fail.add(where, f"{name_of(w)} sets replicas although {name_of(h)} owns them (every apply would reset it)")
        if not [m for m in h["spec"].get("metrics") or [] if (m.get("resource") or {}).get("name") == "cpu"]:
            fail.add(where, f"{name_of(h)} has no CPU metric")
    if SPLIT_TARGETS <= set(targets):
        scaled = {h["spec"]["scaleTargetRef"]["name"] for h in hpas}
        for need in ("session-svc", "pubsub-svc"):
            if need not in scaled:
                fail.add(where, f"no HorizontalPodAutoscaler for {need}")

    check_policies(where, workloads, policies, fail)
    return {"configmaps": configmaps, "workloads": workloads}


def env_literal(container: dict, name: str) -> str | None:
    for e in container.get("env") or []:
        if e["name"] == name and "value" in e:
            return e["value"]
    return None


def load_config(container: dict, volumes: dict, configmaps: dict) -> dict | None:
    text = config_text(container, volumes, configmaps)
    return None if text is None else tomllib.loads(text)


def config_text(container: dict, volumes: dict, configmaps: dict) -> str | None:
    path = config_path_of(container)
    if path is None:
        return None
    for m in container.get("volumeMounts") or []:
        prefix = m["mountPath"].rstrip("/") + "/"
        vol = volumes.get(m["name"]) or {}
        if path.startswith(prefix) and "configMap" in vol:
            key = m.get("subPath") or path[len(prefix):]
            return configmaps.get(vol["configMap"]["name"], {}).get(key)
    return None


def check_edges(where: str, workload: dict, container: dict, config: dict, fail: Failures) -> None:
    """A StatefulSet edge: bus.edges names every replica at its own pod."""
    instance = next((e for e in container.get("env") or [] if e["name"] == "SIPBUS_EDGE__INSTANCE"), None)
    field = ((instance or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
    if workload["kind"] == "StatefulSet":
        if field != "metadata.name":
            fail.add(where, "SIPBUS_EDGE__INSTANCE must come from metadata.name (sip-edge-0, sip-edge-1, ...)")
        edges = (config.get("bus") or {}).get("edges") or {}
        name, service = workload["metadata"]["name"], workload["spec"]["serviceName"]
        want = {f"{name}-{i}" for i in range(workload["spec"].get("replicas", 1))}
        if set(edges) != want:
            fail.add(where, f"bus.edges names {sorted(edges)}, the StatefulSet runs {sorted(want)}")
        for pod, address in edges.items():
            if not re.fullmatch(rf"http://{re.escape(pod)}\.{re.escape(service)}(\.[a-z0-9.-]+)?:{GRPC_PORT}", address):
                fail.add(where, f"bus.edges.{pod} = `{address}` should be http://{pod}.{service}:{GRPC_PORT}")
    elif workload["kind"] == "DaemonSet":
        if field != "spec.nodeName":
            fail.add(where, "SIPBUS_EDGE__INSTANCE of a DaemonSet edge must come from spec.nodeName")
    else:
        fail.add(where, "the edge needs a stable name per replica: a StatefulSet (or a host-network DaemonSet)")


def check_policies(where: str, workloads: list[dict], policies: list[dict], fail: Failures) -> None:
    if not [p for p in policies if p["spec"].get("podSelector") == {} and "Ingress" in p["spec"].get("policyTypes", [])
            and not p["spec"].get("ingress")]:
        fail.add(where, "no default-deny ingress NetworkPolicy")
    for w in workloads:
        labels = w["spec"]["template"]["metadata"].get("labels") or {}
        pod = w["spec"]["template"]["spec"]
        containers = pod.get("containers") or []
        rules = [r for p in policies if selects(p["spec"].get("podSelector"), labels) for r in p["spec"].get("ingress") or []]

        def number(port):
            for c in containers:
                n = port_number(c, port)
                if n is not None:
                    return n
            return port

        def allowed(port: int):
            return [r for r in rules if not r.get("ports") or port in [number(p.get("port")) for p in r["ports"]]]

        ww = f"{where}/{name_of(w)}"
        for r in rules:
            if not r.get("from"):
                opened = {number(p.get("port")) for p in r.get("ports") or [{"port": "every"}]}
                if opened - SIP_PORTS:
                    fail.add(ww, f"a NetworkPolicy opens {sorted(map(str, opened - SIP_PORTS))} to everyone (only SIP may be)")
        ports = {p["containerPort"] for c in containers for p in c.get("ports") or []}
        if any(is_sipbus(c) for c in containers) and pod.get("hostNetwork") is not True:
            for p in ports & SIP_PORTS:
                if not [r for r in allowed(p) if not r.get("from")]:
                    fail.add(ww, f"SIP port {p} is not open to everyone")
            if ADMIN_PORT in ports and not [r for r in allowed(ADMIN_PORT)
                                            if any("namespaceSelector" in f for f in r.get("from") or [])]:
                fail.add(ww, f"metrics port {ADMIN_PORT} not reachable from the monitoring namespace")
            if GRPC_PORT in ports:
                if target_of(containers[0]) != "all" and not allowed(GRPC_PORT):
                    fail.add(ww, f"gRPC port {GRPC_PORT} reachable from nothing")
                for r in allowed(GRPC_PORT):
                    for f in r.get("from") or [None]:
                        if f is None or "namespaceSelector" in f or ("podSelector" not in f and "ipBlock" not in f):
                            fail.add(ww, f"gRPC port {GRPC_PORT} reachable from more than sipbus's pods: {f}")
        if REDIS_PORT in ports:
            for r in allowed(REDIS_PORT):
                for f in r.get("from") or [None]:
                    if f is None or (f.get("podSelector") or {}).get("matchLabels") != {"sipbus/store": "client"}:
                        fail.add(ww, f"Redis reachable from more than the services (sipbus/store=client): {f}")


# -------------------------------------------------------- sipbus --check-config


def check_config(overlay: str, facts: dict, strip: list[str], fail: Failures) -> int:
    configmaps = facts["configmaps"]
    passed = 0
    for w in facts["workloads"]:
        pod = w["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        for c in pod.get("containers") or []:
            if not is_sipbus(c):
                continue
            where = f"{overlay}/{name_of(w)}/{c['name']}"
            with tempfile.TemporaryDirectory(prefix="sipbus-k8s-check-") as tmp:
                try:
                    args, env = prepare(w, c, volumes, configmaps, Path(tmp), strip)
                except ValueError as e:
                    fail.add(where, str(e))
                    continue
                cmd = [SIPBUS_BIN, *args, "--check-config"]
                try:
                    r = run(cmd, env=env, timeout=60)
                except FileNotFoundError:
                    sys.exit(f"{SIPBUS_BIN} not found: build it (cargo build -p sipbus) or set SIPBUS_BIN")
                if r.returncode:
                    shown = " ".join(f"{k}={v!r}" for k, v in env.items() if k.startswith("SIPBUS_"))
                    fail.add(where, f"sipbus --check-config --target {target_of(c)} failed (exit {r.returncode}):\n"
                                    f"{indent((r.stdout + r.stderr).strip())}\n    env: {shown}")
                else:
                    passed += 1
    return passed


def prepare(workload: dict, c: dict, volumes: dict, configmaps: dict, tmp: Path, strip: list[str]):
    """The container's args and environment, its mounts under tmp."""
    root = tmp / "root"
    moves: list[tuple[str, str]] = []
    for m in c.get("volumeMounts") or []:
        mount = m["mountPath"].rstrip("/")
        local = root / mount.lstrip("/")
        vol = volumes.get(m["name"])
        if vol is None:
            claims = [t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates") or []]
            if m["name"] not in claims:
                raise ValueError(f"volumeMount {m['name']} has no volume")
            vol = {"emptyDir": {}}
        files: dict[str, str] = {}
        if "configMap" in vol:
            name = vol["configMap"]["name"]
            if name not in configmaps:
                raise ValueError(f"volume {m['name']}: ConfigMap {name} is not rendered")
            files = dict(configmaps[name])
        elif "secret" in vol:
            cert, key = sample_tls()
            files = {"tls.crt": cert, "tls.key": key, "ca.crt": cert}
        for item in (vol.get("configMap") or vol.get("secret") or {}).get("items") or []:
            files[item["path"]] = files.pop(item["key"], "")
        if m.get("subPath"):
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text(files.get(m["subPath"], ""))
        else:
            local.mkdir(parents=True, exist_ok=True)
            for k, v in files.items():
                (local / k).write_text(v)
        moves.append((mount, str(local)))
    moves.sort(key=lambda mv: -len(mv[0]))

    # One pass, longest mount first: a path already moved is not moved again.
    pattern = re.compile(r"(?<![\w/.-])(" + "|".join(re.escape(m) for m, _ in moves) + r")(?=/|\"|'|$|\s|,|\])") \
        if moves else None
    local_of = dict(moves)

    def relocate(text: str) -> str:
        return pattern.sub(lambda m: local_of[m.group(1)], text) if pattern else text

    # Files the config names live at the mounts: rewrite them there too.
    for mount, local in moves:
        for f in Path(local).rglob("*.toml") if Path(local).is_dir() else []:
            text = strip_sections(f.read_text(), strip) if strip else f.read_text()
            f.write_text(relocate(text))

    env: dict[str, str] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp)}
    for src in c.get("envFrom") or []:
        if "configMapRef" in src:
            data = configmaps.get(src["configMapRef"]["name"])
            if data is None:
                raise ValueError(f"envFrom: ConfigMap {src['configMapRef']['name']} is not rendered")
            env.update({src.get("prefix", "") + k: v for k, v in data.items()})
        else:
            raise ValueError(f"envFrom {src}: no sample values for it in check.py")
    for e in c.get("env") or []:
        name = e["name"]
        if "value" in e:
            env[name] = expand(e["value"], env)
            continue
        ref = e.get("valueFrom") or {}
        if "configMapKeyRef" in ref:
            r = ref["configMapKeyRef"]
            value = (configmaps.get(r["name"]) or {}).get(r["key"])
            if value is None:
                if r.get("optional"):
                    continue
                raise ValueError(f"env {name}: ConfigMap {r['name']} key {r['key']} is not rendered")
            env[name] = value
        elif "secretKeyRef" in ref:
            r = ref["secretKeyRef"]
            value = SECRET_SAMPLES.get((r["name"], r["key"]))
            if value is None:
                raise ValueError(f"env {name}: no sample for Secret {r['name']} key {r['key']}: add it to "
                                 "SECRET_SAMPLES in check.py and to README.md's secrets")
            env[name] = value
        elif "fieldRef" in ref:
            path = ref["fieldRef"]["fieldPath"]
            if path == "metadata.name":
                env[name] = pod_name(workload)
            elif path in FIELD_SAMPLES:
                env[name] = FIELD_SAMPLES[path]
            else:
                raise ValueError(f"env {name}: no sample for fieldRef {path}")
        else:
            raise ValueError(f"env {name}: unsupported valueFrom {ref}")
    env = {k: relocate(v) for k, v in env.items()
           if not any(k.startswith(f"SIPBUS_{s.upper()}__") for s in strip)}
    args = [relocate(expand(a, env)) for a in c.get("args") or []]
    return args, env


# ------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--overlay", action="append", help="only this overlay (repeatable)")
    parser.add_argument("--strip-keys", default="",
                        help="comma-separated top-level config sections (and their SIPBUS_ variables) to drop "
                             "before --check-config, for a sipbus that does not know them yet")
    opts = parser.parse_args()
    strip = [s for s in opts.strip_keys.split(",") if s]

    overlays = sorted(p.name for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").exists())
    if opts.overlay:
        unknown = set(opts.overlay) - set(overlays)
        if unknown:
            sys.exit(f"no overlay {sorted(unknown)}; there are {overlays}")
        overlays = opts.overlay
    if not shutil.which(KUBECTL):
        sys.exit(f"{KUBECTL} not found (kubectl kustomize renders the overlays)")
    if not os.access(SIPBUS_BIN, os.X_OK):
        sys.exit(f"{SIPBUS_BIN} not found: build it (cargo build -p sipbus) or set SIPBUS_BIN")

    python = venv_python()
    own, versions = validator_versions(python)
    validate = VENV / "bin" / "kubernetes-validate"
    readme = (HERE / "README.md").read_text() if (HERE / "README.md").exists() else ""
    for secret in sorted({s for s, _ in SECRET_SAMPLES}):
        if secret not in readme:
            print(f"warning: README.md does not say how to create Secret {secret}", file=sys.stderr)

    fail = Failures()
    summary = []
    for overlay in overlays:
        before = len(fail.items)
        r = run([KUBECTL, "kustomize", str(OVERLAYS / overlay)])
        if r.returncode:
            fail.add(overlay, f"kubectl kustomize failed:\n{indent(r.stderr.strip())}")
            summary.append(f"{overlay}: FAILED to render")
            continue
        with tempfile.NamedTemporaryFile("w", suffix=f"-{overlay}.yaml", delete=False) as f:
            f.write(r.stdout)
        try:
            cmd = [str(validate), "--strict", "--quiet"]
            for v in versions:
                cmd += ["-k", v]
            v = run(cmd + [f.name])
            if v.returncode or "ERROR" in v.stdout + v.stderr:
                fail.add(overlay, f"kubernetes-validate --strict failed:\n{indent((v.stdout + v.stderr).strip())}")
        finally:
            os.unlink(f.name)
        try:
            objs = to_json(python, r.stdout)
        except RuntimeError as e:
            fail.add(overlay, str(e))
            continue
        facts = check_objects(overlay, objs, fail)
        passed = check_config(overlay, facts, strip, fail)
        status = "ok" if len(fail.items) == before else f"{len(fail.items) - before} FAILED"
        summary.append(f"{overlay}: {len(objs)} objects, {len(facts['workloads'])} workloads, "
                       f"{passed} sipbus containers pass --check-config: {status}")

    for item in fail.items:
        print(f"FAIL {item}", file=sys.stderr)
    print(f"kubernetes-validate {own}, --strict against Kubernetes {' and '.join(versions)}; "
          f"sipbus: {SIPBUS_BIN}" + (f" (without {', '.join(strip)})" if strip else ""))
    for line in summary:
        print(f"  {line}")
    print(f"{len(overlays) - sum('ok' not in s.rsplit(': ', 1)[-1] for s in summary)} passed, "
          f"{sum('ok' not in s.rsplit(': ', 1)[-1] for s in summary)} failed")
    return 1 if fail.items else 0


if __name__ == "__main__":
    sys.exit(main())
