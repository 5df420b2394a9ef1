#!/usr/bin/env python3
"""Multi-host chaos tests for sipbus split mode, on Linux network namespaces.

Every component of split mode runs in its own network namespace, joined by
veth pairs to one bridge, with addresses from 198.18.0.0/15 (RFC 2544):
Redis, one sip-edge, two registrar-svc, two session-svc, two sdp-svc, two
pubsub-svc and one publish-svc (sdp-svc and publish-svc share one
namespace), and the phones (SIPp). Faults are injected with iptables in the
namespaces (random drops, cuts between two addresses) and with SIGKILL.
Scenarios (each on a fresh stack and a fresh Redis):

  1 loss        10 % packet loss between phones and edge, both directions:
                registrations and calls complete through retransmissions.
  2 session-cut one session-svc cut from Redis while calls are up: their
                BYEs complete (through the other replica), no call lost.
  3 edge-kill   the edge SIGKILLed and restarted on the same address while
                calls are up: their BYEs complete; new calls work after.
  4 redis-kill  Redis SIGKILLed and restarted with its append-only file
                during calls and subscriptions: nothing acknowledged is
                lost; requests during the outage get 503 + Retry-After.
  5 pubsub-cut  pubsub-svc replica 1 partitioned from Redis mid fan-out:
                no duplicate NOTIFY, every subscriber ends with the right
                state after PUBLISHes and a registration change.

Run as root (CI does):   sudo python3 tests/chaos/chaos.py
Only some scenarios:     sudo python3 tests/chaos/chaos.py 1 4
Remove leftovers:        sudo python3 tests/chaos/chaos.py --cleanup

The binary is $SIPBUS_BIN (default target/debug/sipbus in the repository).
Logs of every process and every SIPp run stay under the run directory the
harness prints (or $SBCHAOS_DIR). Python 3.11 standard library only.
Exit status: 0 when every scenario passed (or SKIP when not root), 1 when
an assertion failed, 2 on a setup error.
"""

from __future__ import annotations

import argparse
import atexit
import calendar
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHAOS_DIR = REPO / "tests" / "chaos"
SCENARIOS = REPO / "tests" / "scenarios"

PREFIX = "sbchaos-"
BRIDGE_NS = PREFIX + "br"
BRIDGE = "sbchaos0"
BRIDGE_IP = "198.18.0.1"
CHAIN = "SBCHAOS"

# Namespace (without the prefix) -> address.
NODES = {
    "edge": "198.18.0.10",
    "sess1": "198.18.0.21",
    "sess2": "198.18.0.22",
    "reg1": "198.18.0.31",
    "reg2": "198.18.0.32",
    "pubsub1": "198.18.0.41",
    "pubsub2": "198.18.0.42",
    "redis": "198.18.0.50",
    "media": "198.18.0.60",  # both sdp-svc and publish-svc
    "phones": "198.18.0.100",
}
EDGE_IP = NODES["edge"]
PHONES_IP = NODES["phones"]
REDIS_IP = NODES["redis"]
SIP_PORT = 5060
EDGE_GRPC = f"{EDGE_IP}:50060"
REDIS_PORT = 6379
REDIS_URL = f"redis://{REDIS_IP}:{REDIS_PORT}/"
DOMAIN = "example.com"
PASSWORD = "secret"
TOKEN = "sbchaos-chaos-test-token"
USERS = [
    "reg1", "callee1", "callee2", "callee3", "callee4", "reg4", "mwi4", "pres4",
    "mwi5", "pres5",
]

# name, target, namespace, gRPC address
SERVICES = [
    ("registrar-1", "registrar-svc", "reg1", f"{NODES['reg1']}:50061"),
    ("registrar-2", "registrar-svc", "reg2", f"{NODES['reg2']}:50061"),
    ("sdp-1", "sdp-svc", "media", f"{NODES['media']}:50081"),
    ("sdp-2", "sdp-svc", "media", f"{NODES['media']}:50082"),
    ("session-1", "session-svc", "sess1", f"{NODES['sess1']}:50071"),
    ("session-2", "session-svc", "sess2", f"{NODES['sess2']}:50071"),
    ("pubsub-1", "pubsub-svc", "pubsub1", f"{NODES['pubsub1']}:50091"),
    ("pubsub-2", "pubsub-svc", "pubsub2", f"{NODES['pubsub2']}:50091"),
    ("publish", "publish-svc", "media", f"{NODES['media']}:50101"),
]
PUBLISH_API = f"http://{NODES['media']}:50101"


def addr_list(*names: str) -> str:
    by_name = {s[0]: s[3] for s in SERVICES}
    return "[" + ", ".join(f'"http://{by_name[n]}"' for n in names) + "]"


class Failure(Exception):
    """An assertion of a scenario failed."""


class SetupError(Exception):
    """The harness could not build what a scenario needs."""


# --------------------------------------------------------------------------
# Time: one budget for the whole run; every wait takes the smaller of its
# own bound and what is left.


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def bound(self, limit: float) -> float:
        left = self.left()
        if left <= 0:
            raise Failure("the run's time budget is exhausted (SBCHAOS_BUDGET_S)")
        return min(limit, left)


BUDGET = Budget(float(os.environ.get("SBCHAOS_BUDGET_S", "330")))


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(cmd: list[str], timeout: float = 20, check: bool = True) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise SetupError(f"timed out after {timeout}s: {' '.join(cmd)}") from e
    if check and r.returncode != 0:
        raise SetupError(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    return r


def nsx(ns: str, cmd: list[str]) -> list[str]:
    return ["ip", "netns", "exec", PREFIX + ns, *cmd]


# --------------------------------------------------------------------------
# Cleanup: everything this harness creates carries the sbchaos- prefix
# (namespaces) or lives inside those namespaces (veths, the bridge,
# iptables chains, processes), so cleanup finds it by name even after a
# crash.


def our_namespaces() -> list[str]:
    r = sh(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.startswith(PREFIX)]


def kill_pids(pids: list[int], grace: float = 2.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + grace
        while time.monotonic() < end and any(alive(p) for p in pids):
            time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def cleanup_all(quiet: bool = False) -> list[str]:
    """Kills every process in our namespaces, removes our iptables chains
    and namespaces (their veths and the bridge go with them). Returns what
    it removed."""
    removed = []
    namespaces = our_namespaces()
    pids: list[int] = []
    for ns in namespaces:
        r = sh(["ip", "netns", "pids", ns], check=False)
        pids += [int(p) for p in r.stdout.split() if p.isdigit()]
    if pids:
        kill_pids(pids)
        removed.append(f"{len(pids)} process(es)")
    for ns in namespaces:
        ipt = ["ip", "netns", "exec", ns, "iptables"]
        if sh(ipt + ["-L", CHAIN, "-n"], check=False).returncode == 0:
            sh(ipt + ["-D", "INPUT", "-j", CHAIN], check=False)
            sh(ipt + ["-F", CHAIN], check=False)
            sh(ipt + ["-X", CHAIN], check=False)
        sh(["ip", "netns", "del", ns], check=False)
        removed.append(f"netns {ns}")
    # Nothing is created in the root namespace; a link with our prefix
    # there would be a leftover of an interrupted run of an older version.
    r = sh(["ip", "-o", "link", "show"], check=False)
    for line in r.stdout.splitlines():
        m = re.match(r"\d+: ([^:@]+)", line)
        if m and m.group(1).startswith(("sbchaos", "sbc-")):
            sh(["ip", "link", "del", m.group(1)], check=False)
            removed.append(f"link {m.group(1)}")
    if removed and not quiet:
        log("cleaned up: " + ", ".join(removed))
    return removed


# --------------------------------------------------------------------------
# SIPp message logs.


@dataclass
class SipMsg:
    sent: bool
    first: str
    headers: dict[str, list[str]]
    body: str

    def h(self, name: str) -> str:
        v = self.headers.get(name.lower())
        return v[0] if v else ""

    @property
    def status(self) -> int | None:
        m = re.match(r"SIP/2\.0 (\d{3})", self.first)
        return int(m.group(1)) if m else None

    @property
    def method(self) -> str | None:
        m = re.match(r"([A-Z]+) \S+ SIP/2\.0", self.first)
        return m.group(1) if m else None

    @property
    def cseq(self) -> tuple[int, str]:
        parts = self.h("cseq").split()
        try:
            return int(parts[0]), parts[1] if len(parts) > 1 else ""
        except (ValueError, IndexError):
            return 0, ""

    @property
    def branch(self) -> str:
        m = re.search(r"branch=([^;,\s]+)", self.h("via"))
        return m.group(1) if m else ""


COMPACT = {"i": "call-id", "v": "via", "f": "from", "t": "to", "m": "contact", "l": "content-length",
           "c": "content-type", "o": "event"}


def parse_trace(path: Path) -> list[SipMsg]:
    try:
        text = path.read_text(errors="replace").replace("\r\n", "\n")
    except OSError:
        return []
    out = []
    for chunk in re.split(r"\n-{20,}[^\n]*\n", "\n" + text):
        head = chunk[:200]
        if "message sent" in head:
            sent = True
        elif "message received" in head:
            sent = False
        else:
            continue
        m = re.search(r"^(SIP/2\.0 \d{3}.*|[A-Z]+ \S+ SIP/2\.0)$", chunk, re.M)
        if not m:
            continue
        msg = chunk[m.start():]
        hdr, _, body = msg.partition("\n\n")
        lines = hdr.split("\n")
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                k = k.strip().lower()
                headers.setdefault(COMPACT.get(k, k), []).append(v.strip())
        out.append(SipMsg(sent, lines[0].strip(), headers, body.strip()))
    return out


@dataclass
class Notify:
    cseq: int
    branch: str
    state: str
    body: str


def notifies_by_call(msgs: list[SipMsg]) -> dict[str, list[Notify]]:
    """Every NOTIFY received, per Call-ID, in arrival order, retransmissions
    (same CSeq and same Via branch) dropped."""
    out: dict[str, list[Notify]] = {}
    for m in msgs:
        if m.sent or m.method != "NOTIFY":
            continue
        n = Notify(m.cseq[0], m.branch, m.h("subscription-state"), m.body)
        lst = out.setdefault(m.h("call-id"), [])
        if any(x.cseq == n.cseq and x.branch == n.branch for x in lst):
            continue
        lst.append(n)
    return out


def judge_notifies(by_call: dict[str, list[Notify]], final_re: str) -> tuple[int, list[str], list[str]]:
    """Duplicates (a second NOTIFY transaction with a CSeq already seen, or
    a NOTIFY repeating the previous one's state; the terminated one is not
    compared), and subscriptions whose last state before the end is not
    final_re. Returns (duplicates, duplicate descriptions, wrong-state
    descriptions)."""
    dups = 0
    dup_notes: list[str] = []
    wrong: list[str] = []
    for call, lst in by_call.items():
        seen: dict[int, str] = {}
        prev: Notify | None = None
        for n in lst:
            if n.cseq in seen:
                dups += 1
                dup_notes.append(f"{call}: CSeq {n.cseq} twice (branches {seen[n.cseq]}, {n.branch})")
            seen[n.cseq] = n.branch
            terminated = n.state.startswith("terminated")
            if prev is not None and not terminated and n.body == prev.body:
                dups += 1
                dup_notes.append(f"{call}: CSeq {n.cseq} repeats the state of CSeq {prev.cseq}: {n.body[:80]!r}")
            if not terminated:
                prev = n
        if prev is None or not re.search(final_re, prev.body):
            wrong.append(f"{call}: last state {(prev.body if prev else None)!r:.160}")
    return dups, dup_notes, wrong


def statuses(msgs: list[SipMsg], method: str) -> dict[int, int]:
    """Final (and provisional) answers received for requests of `method`,
    counted once per transaction (branch) and status."""
    seen = set()
    counts: dict[int, int] = {}
    for m in msgs:
        if m.sent or m.status is None or m.cseq[1] != method:
            continue
        key = (m.h("call-id"), m.branch, m.status)
        if key in seen:
            continue
        seen.add(key)
        counts[m.status] = counts.get(m.status, 0) + 1
    return counts


# --------------------------------------------------------------------------
# Processes.


@dataclass
class Proc:
    name: str
    ns: str
    cmd: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen | None = None

    def start(self) -> None:
        f = open(self.log, "ab")
        self.popen = subprocess.Popen(
            nsx(self.ns, self.cmd), env=self.env, stdout=f, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        f.close()

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=5)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


@dataclass
class SippResult:
    name: str
    exit_code: int | None
    successful: int
    failed: int
    retransmissions: int
    timed_out: bool
    out: Path
    msg: Path
    err: Path

    def ok(self) -> bool:
        return self.exit_code == 0 and self.failed == 0 and not self.timed_out

    def describe(self) -> str:
        s = (f"{self.name}: exit {self.exit_code}, {self.successful} ok, {self.failed} failed, "
             f"{self.retransmissions} retransmissions")
        if self.timed_out:
            s += ", killed at its time limit (still waiting)"
        return s

    def errors(self, lines: int = 6) -> str:
        try:
            text = self.err.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


class Sipp:
    """One SIPp run in the phones namespace, in the background, killed at
    its time limit."""

    def __init__(self, h: "Harness", name: str, args: list[str], limit: float):
        self.name = name
        d = h.scdir
        self.stat, self.msg, self.err, self.out = (d / f"{name}.stat.csv", d / f"{name}.msg",
                                                   d / f"{name}.err", d / f"{name}.out")
        cmd = ["sipp", *args, "-nostdin", "-trace_stat", "-stf", str(self.stat), "-fd", "1",
               "-trace_msg", "-message_file", str(self.msg), "-trace_err", "-error_file", str(self.err)]
        self.proc = Proc(f"sipp-{name}", "phones", cmd, dict(os.environ), self.out)
        self.proc.start()
        h.procs.append(self.proc)
        self.deadline = time.monotonic() + BUDGET.bound(limit)
        self.result: SippResult | None = None

    def done(self) -> bool:
        return not self.proc.running()

    def wait(self, within: float | None = None) -> SippResult:
        """Waits for SIPp to end, at most until its time limit (or `within`
        seconds from now), then kills it."""
        if self.result:
            return self.result
        deadline = self.deadline if within is None else min(self.deadline, time.monotonic() + within)
        timed_out = False
        while self.proc.running():
            if time.monotonic() > deadline or BUDGET.left() <= 0:
                timed_out = True
                self.proc.kill()
                break
            time.sleep(0.1)
        code = self.proc.popen.wait() if self.proc.popen else None
        ok, failed, retrans = stat_counts(self.stat)
        self.result = SippResult(self.name, code, ok, failed, retrans, timed_out, self.out, self.msg, self.err)
        return self.result

    def messages(self) -> list[SipMsg]:
        return parse_trace(self.msg)


def stat_counts(path: Path) -> tuple[int, int, int]:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return 0, 0, 0
    if len(lines) < 2:
        return 0, 0, 0
    header = lines[0].split(";")
    last = lines[-1].split(";")

    def col(name: str) -> int:
        try:
            return int(last[header.index(name)])
        except (ValueError, IndexError):
            return 0

    return col("SuccessfulCall(C)"), col("FailedCall(C)"), col("Retransmissions(C)")


# --------------------------------------------------------------------------
# The harness: topology, the sipbus stack, faults, SIPp.


class Harness:
    def __init__(self, binary: Path, rundir: Path):
        self.bin = binary
        self.rundir = rundir
        self.procs: list[Proc] = []
        self.stack: dict[str, Proc] = {}
        self.scdir = rundir
        self.redis_dir = rundir
        self.config = rundir / "chaos.toml"
        self.port = 5100  # SIPp takes media ports from 6000 up

    # -- topology ---------------------------------------------------------

    def topology_up(self) -> None:
        names = [BRIDGE_NS] + [PREFIX + n for n in NODES]
        for ns in names:
            sh(["ip", "netns", "add", ns])
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        sh(["ip", "-n", BRIDGE_NS, "link", "add", BRIDGE, "type", "bridge"])
        sh(["ip", "-n", BRIDGE_NS, "addr", "add", f"{BRIDGE_IP}/24", "dev", BRIDGE])
        sh(["ip", "-n", BRIDGE_NS, "link", "set", BRIDGE, "up"])
        for node, ip in NODES.items():
            ns = PREFIX + node
            port = f"ve-{node}"
            sh(["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port,
                "netns", BRIDGE_NS])
            sh(["ip", "-n", BRIDGE_NS, "link", "set", port, "master", BRIDGE])
            sh(["ip", "-n", BRIDGE_NS, "link", "set", port, "up"])
            sh(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
            sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
            ipt = nsx(node, ["iptables"])
            sh(ipt + ["-N", CHAIN])
            sh(ipt + ["-I", "INPUT", "-j", CHAIN])
        # The phones reach the bridge and every namespace (a refused
        # connection to a closed port proves the path) before anything starts.
        self.probe_ports([f"{ip}:1" for ip in [BRIDGE_IP, *NODES.values()] if ip != PHONES_IP], 5,
                         expect_refused=True)

    def probe_ports(self, targets: list[str], limit: float, expect_refused: bool = False) -> list[str]:
        """From the phones namespace: which of host:port targets do not
        accept a TCP connection within limit (with expect_refused: which do
        not even answer with a refusal, i.e. are unreachable)."""
        script = (
            "import socket,sys,time\n"
            "end=time.time()+float(sys.argv[1]); refused=sys.argv[2]=='1'; pending=set(sys.argv[3:])\n"
            "while True:\n"
            "  for t in sorted(pending):\n"
            "    h,p=t.rsplit(':',1)\n"
            "    try:\n"
            "      socket.create_connection((h,int(p)),0.5).close(); pending.discard(t)\n"
            "    except ConnectionRefusedError:\n"
            "      refused and pending.discard(t)\n"
            "    except OSError: pass\n"
            "  if not pending or time.time()>end: break\n"
            "  time.sleep(0.1)\n"
            "print(' '.join(sorted(pending)))\n"
        )
        r = sh(nsx("phones", [sys.executable, "-c", script, str(limit), "1" if expect_refused else "0",
                              *targets]), timeout=limit + 10)
        missing = r.stdout.split()
        if expect_refused and missing:
            raise SetupError(f"the bridge does not connect the namespaces: {missing} unreachable")
        return missing

    # -- faults -----------------------------------------------------------

    def rule(self, ns: str, spec: list[str]) -> None:
        sh(nsx(ns, ["iptables", "-A", CHAIN, *spec]))

    def loss(self, ns: str, peer_ip: str, p: float) -> None:
        """Drops the share p of what ns receives from peer_ip."""
        self.rule(ns, ["-s", peer_ip, "-m", "statistic", "--mode", "random", "--probability", str(p),
                       "-j", "DROP"])

    def cut(self, a: str, b: str) -> None:
        """Drops everything between namespaces a and b, both ways."""
        self.rule(a, ["-s", NODES[b], "-j", "DROP"])
        self.rule(b, ["-s", NODES[a], "-j", "DROP"])

    def counted(self, ns: str, comment: str) -> int:
        """Packets a (target-less) rule with this comment has counted."""
        r = sh(nsx(ns, ["iptables", "-L", CHAIN, "-v", "-n", "-x"]), check=False)
        for line in r.stdout.splitlines():
            if comment in line and line.split()[0].isdigit():
                return int(line.split()[0])
        return 0

    def heal(self) -> None:
        for node in NODES:
            sh(nsx(node, ["iptables", "-F", CHAIN]), check=False)

    def drops(self) -> dict[str, int]:
        """Packets dropped so far by our rules, per namespace."""
        out = {}
        for node in NODES:
            r = sh(nsx(node, ["iptables", "-L", CHAIN, "-v", "-n", "-x"]), check=False)
            n = sum(int(line.split()[0]) for line in r.stdout.splitlines()[2:]
                    if line.split() and line.split()[0].isdigit() and "DROP" in line)
            if n:
                out[node] = n
        return out

    # -- the stack --------------------------------------------------------

    def write_config(self) -> None:
        users = ", ".join(f'{{ user = "{u}", password = "{PASSWORD}" }}' for u in USERS)
        self.config.write_text(f"""# Written by tests/chaos/chaos.py: shared by every process of a run;
# per-process addresses come from SIPBUS_* variables as in deploy/run-split.sh.
[registrar]
domains = ["{DOMAIN}"]
users = [{users}]
max_bindings = 1000

[registrar.auth]
algorithms = ["MD5", "SHA-256"]
nonce_key = "sbchaos shared nonce key"

[session]
# SIPp does not answer 407 (tests/tests/calls.rs does the same).
authenticate = false

[pubsub]
authenticate = false
# A dead or cut-off replica's work is taken over after 3 s (40 s by default),
# as tests/tests/events_cluster.rs does.
reclaim_after_ms = 3000

[publish]
authenticate = false

[registry]
# The mwi API from another namespace is not loopback.
token = "{TOKEN}"

[shutdown]
drain_s = 0
""")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPBUS_") and k != "RUST_LOG"}
        env.update({
            "SIPBUS_STORE__REDIS": REDIS_URL,
            "SIPBUS_LOG__LEVEL": os.environ.get("SBCHAOS_LOG", "info"),
            "SIPBUS_SHUTDOWN__DRAIN_S": "0",
        })
        env.update(extra)
        return env

    def start_redis(self) -> None:
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        p = Proc("redis", "redis", [
            "redis-server", "--bind", REDIS_IP, "127.0.0.1", "--port", str(REDIS_PORT),
            "--protected-mode", "no", "--save", "", "--appendonly", "yes", "--appendfsync", "always",
            "--dir", str(self.redis_dir), "--daemonize", "no",
        ], self.env(), self.scdir / "redis.log")
        p.start()
        self.procs.append(p)
        self.stack["redis"] = p
        end = time.monotonic() + BUDGET.bound(15)
        while time.monotonic() < end:
            if not p.running():
                raise SetupError(f"redis-server exited: see {p.log}\n{tail(p.log)}")
            if self.redis("PING", check=False).strip() == "PONG":
                return
            time.sleep(0.1)
        raise SetupError(f"Redis did not answer PING within 15 s: {p.log}")

    def redis(self, *args: str, check: bool = True) -> str:
        r = sh(nsx("redis", ["redis-cli", "-h", "127.0.0.1", "-p", str(REDIS_PORT), "--raw", *args]),
               timeout=10, check=check)
        return r.stdout

    def bindings(self, user: str) -> int:
        raw = self.redis("HGET", f"reg:{{sip:{user}@{DOMAIN}}}", "d").strip()
        return len(json.loads(raw).get("bindings", [])) if raw else 0

    def keys(self, pattern: str) -> int:
        return len([k for k in self.redis("--scan", "--pattern", pattern).splitlines() if k.strip()])

    def service_env(self, target: str, grpc: str) -> dict[str, str]:
        edges = f'{{ edge1 = "http://{EDGE_GRPC}" }}'
        registrars = addr_list("registrar-1", "registrar-2")
        extra = {"SIPBUS_GRPC__LISTEN": grpc}
        if target == "session-svc":
            extra.update(SIPBUS_BUS__EDGES=edges, SIPBUS_BUS__REGISTRAR=registrars,
                         SIPBUS_BUS__SDP=addr_list("sdp-1", "sdp-2"))
        elif target == "pubsub-svc":
            extra.update(SIPBUS_BUS__EDGES=edges, SIPBUS_BUS__REGISTRAR=registrars)
        return self.env(**extra)

    def edge_proc(self, log_name: str) -> Proc:
        env = self.env(
            SIPBUS_EDGE__LISTEN=f'["udp:{EDGE_IP}:{SIP_PORT}", "tcp:{EDGE_IP}:{SIP_PORT}"]',
            SIPBUS_EDGE__INSTANCE="edge1",
            SIPBUS_GRPC__LISTEN=EDGE_GRPC,
            SIPBUS_BUS__REGISTRAR=addr_list("registrar-1", "registrar-2"),
            SIPBUS_BUS__SESSION=addr_list("session-1", "session-2"),
            SIPBUS_BUS__PUBSUB=addr_list("pubsub-1", "pubsub-2"),
            SIPBUS_BUS__PUBLISH=addr_list("publish"),
        )
        return Proc("edge", "edge", [str(self.bin), "--config", str(self.config), "--target", "sip-edge"],
                    env, self.scdir / log_name)

    def start_stack(self, scenario: str) -> None:
        self.scdir = self.rundir / scenario
        self.scdir.mkdir(parents=True, exist_ok=True)
        self.redis_dir = self.scdir / "redis-data"
        self.stack = {}
        self.start_redis()
        # In the order of deploy/run-split.sh, each group at once.
        groups = [["registrar-svc", "sdp-svc"], ["session-svc", "pubsub-svc", "publish-svc"]]
        for group in groups:
            started = []
            for name, target, ns, grpc in SERVICES:
                if target not in group:
                    continue
                p = Proc(name, ns, [str(self.bin), "--config", str(self.config), "--target", target],
                         self.service_env(target, grpc), self.scdir / f"{name}.log")
                p.start()
                self.procs.append(p)
                self.stack[name] = p
                started.append((p, grpc))
            self.wait_listening(started, 30)
        edge = self.edge_proc("edge.log")
        edge.start()
        self.procs.append(edge)
        self.stack["edge"] = edge
        self.wait_listening([(edge, EDGE_GRPC), (edge, f"{EDGE_IP}:{SIP_PORT}")], 30)

    def restart_edge(self, n: int) -> None:
        edge = self.edge_proc(f"edge-{n}.log")
        edge.start()
        self.procs.append(edge)
        self.stack["edge"] = edge
        self.wait_listening([(edge, EDGE_GRPC), (edge, f"{EDGE_IP}:{SIP_PORT}")], 30)

    def wait_listening(self, procs: list[tuple[Proc, str]], limit: float) -> None:
        end = time.monotonic() + BUDGET.bound(limit)
        pending = list(procs)
        while pending:
            for p, _ in pending:
                if not p.running():
                    raise SetupError(f"{p.name} exited before listening ({p.log}):\n{tail(p.log)}")
            missing = set(self.probe_ports([a for _, a in pending], 1.0))
            pending = [(p, a) for p, a in pending if a in missing]
            if pending and time.monotonic() > end:
                raise SetupError("not listening within the limit: " +
                                 ", ".join(f"{p.name} on {a} ({p.log})" for p, a in pending))

    def stop_stack(self, keep_data: bool = False) -> None:
        for p in reversed(self.procs):
            if p.running():
                p.stop()
        self.procs = [p for p in self.procs if p.running()]
        leftovers = []
        for ns in our_namespaces():
            r = sh(["ip", "netns", "pids", ns], check=False)
            leftovers += [int(x) for x in r.stdout.split() if x.isdigit()]
        if leftovers:
            kill_pids(leftovers)
        self.heal()
        if not keep_data:  # a failed scenario keeps its Redis files for a look
            shutil.rmtree(self.redis_dir, ignore_errors=True)

    # -- SIP peers --------------------------------------------------------

    def next_port(self) -> int:
        self.port += 1
        return self.port

    def sipp(self, name: str, args: list[str], limit: float) -> Sipp:
        return Sipp(self, name, args, limit)

    def register(self, name: str, user: str, calls: int, rate: int, port: int, tag: str,
                 expires: int = 3600, limit: float = 60, scenario: Path | None = None) -> Sipp:
        csv = self.scdir / f"{name}.csv"
        csv.write_text(f"SEQUENTIAL\n{user};{DOMAIN};{expires};{tag}\n")
        sf = scenario or SCENARIOS / "register_once.xml"
        return self.sipp(name, [
            f"{EDGE_IP}:{SIP_PORT}", "-sf", str(sf), "-inf", str(csv), "-i", PHONES_IP, "-p", str(port),
            "-au", user, "-ap", PASSWORD, "-auth_uri", DOMAIN, "-m", str(calls), "-r", str(rate),
            "-l", str(max(1, rate)), "-timeout", f"{int(limit) - 5}s", "-timeout_error",
        ], limit)

    def uas(self, name: str, port: int, calls: int, limit: float) -> Sipp:
        s = self.sipp(name, ["-sf", str(SCENARIOS / "call_uas.xml"), "-i", PHONES_IP, "-p", str(port),
                             "-m", str(calls), "-timeout", f"{int(limit) - 5}s", "-timeout_error"], limit)
        time.sleep(0.3)  # SIPp binds its port before it reads the scenario
        return s

    def uac(self, name: str, user: str, calls: int, rate: int, hold_ms: int, limit: float,
            sf: Path | None = None) -> Sipp:
        return self.sipp(name, [
            f"{EDGE_IP}:{SIP_PORT}", "-sf", str(sf or SCENARIOS / "call_uac.xml"), "-s", user,
            "-key", "domain", DOMAIN, "-i", PHONES_IP, "-p", str(self.next_port()),
            "-m", str(calls), "-r", str(rate), "-l", str(calls), "-d", str(hold_ms),
            "-timeout", f"{int(limit) - 5}s", "-timeout_error",
        ], limit)

    def filled(self, template: Path, name: str, **fields: str) -> Path:
        text = template.read_text()
        for k, v in fields.items():
            text = text.replace("{{" + k + "}}", v)
        out = self.scdir / name
        out.write_text(text)
        return out

    def watchers(self, name: str, user: str, event: str, accept: str, calls: int, idle_ms: int,
                 limit: float, final_re: str | None = None) -> Sipp:
        if final_re is None:
            sf = self.filled(SCENARIOS / "subscriber.xml", f"{name}.xml", EVENT=event, ACCEPT=accept,
                             EXPIRES="600", IDLE_MS=str(idle_ms), FROM="watcher")
        else:
            sf = self.filled(CHAOS_DIR / "subscriber_until.xml", f"{name}.xml", EVENT=event,
                             ACCEPT=accept, EXPIRES="600", IDLE_MS=str(idle_ms), FROM="watcher",
                             FINAL_RE=final_re)
        return self.sipp(name, [
            f"{EDGE_IP}:{SIP_PORT}", "-sf", str(sf), "-s", user, "-key", "domain", DOMAIN,
            "-i", PHONES_IP, "-p", str(self.next_port()), "-m", str(calls), "-l", str(calls),
            "-r", "50", "-timeout", f"{int(limit) - 5}s", "-timeout_error",
        ], limit)

    def request(self, name: str, method: str, user: str, sender: str, headers: list[str], body: str,
                status: int, check_header: str, check_re: str, calls: int = 1, limit: float = 20) -> Sipp:
        sf = self.filled(SCENARIOS / "request_status.xml", f"{name}.xml", METHOD=method, FROM=sender,
                         HEADERS="\n".join("      " + h for h in headers), BODY=body,
                         STATUS=str(status), CHECK_HEADER=check_header, CHECK_RE=check_re)
        return self.sipp(name, [
            f"{EDGE_IP}:{SIP_PORT}", "-sf", str(sf), "-s", user, "-key", "domain", DOMAIN,
            "-i", PHONES_IP, "-p", str(self.next_port()), "-m", str(calls), "-l", str(calls),
            "-r", "5", "-timeout", f"{int(limit) - 5}s", "-timeout_error",
        ], limit)

    def mwi_set(self, user: str, new: int, attempts: int = 1) -> subprocess.CompletedProcess:
        cmd = nsx("phones", [str(self.bin), "mwi", "set", user, "--new", str(new), "--server", PUBLISH_API,
                             "--token", TOKEN])
        r = None
        for _ in range(attempts):
            r = sh(cmd, timeout=BUDGET.bound(15), check=False)
            if r.returncode == 0:
                return r
            time.sleep(0.5)
        assert r is not None
        return r

    def mwi_set_async(self, user: str, new: int) -> subprocess.Popen:
        return subprocess.Popen(nsx("phones", [str(self.bin), "mwi", "set", user, "--new", str(new),
                                               "--server", PUBLISH_API, "--token", TOKEN]),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    # -- evidence ---------------------------------------------------------

    def evidence(self, names: list[str], pattern: str = r"WARN|ERROR|panick", lines: int = 8) -> str:
        out = []
        for n in names:
            for path in sorted(self.scdir.glob(f"{n}*.log")):
                try:
                    text = path.read_text(errors="replace").splitlines()
                except OSError:
                    continue
                hits = [strip_ansi(line) for line in text if re.search(pattern, line)]
                out.append(f"  --- {path} ({len(hits)} matching lines; last {min(lines, len(hits))}):")
                out += ["    " + h[:300] for h in hits[-lines:]]
        return "\n".join(out)

    def last_log_time(self, name: str, needle: str) -> float:
        """Wall-clock time of the last line of a service's log holding
        needle (0 when none)."""
        last = 0.0
        for path in self.scdir.glob(f"{name}*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if needle in line:
                    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z", strip_ansi(line))
                    if m:
                        stamp = m.group(1)
                        whole, _, frac = stamp.partition(".")
                        t = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float("0." + (frac or "0"))
                        last = max(last, t)
        return last

    def count_in_logs(self, name: str, needle: str) -> int:
        n = 0
        for path in self.scdir.glob(f"{name}*.log"):
            n += path.read_text(errors="replace").count(needle)
        return n


def strip_ansi(s: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", s)


def tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(strip_ansi(x) for x in path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def wait_for(what: str, cond, limit: float, every: float = 0.2) -> None:
    end = time.monotonic() + BUDGET.bound(limit)
    while not cond():
        if time.monotonic() > end:
            raise Failure(f"timed out after {limit:.0f}s waiting for {what}")
        time.sleep(every)


def acks_sent(s: Sipp) -> int:
    return sum(1 for m in s.messages() if m.sent and m.method == "ACK")


# --------------------------------------------------------------------------
# Scenarios. Each fills `row` (the summary table) and appends a sentence
# per failed requirement to `fails`.


@dataclass
class Row:
    scenario: str
    calls: list[int] = field(default_factory=lambda: [0, 0, 0])  # attempted, completed, failed
    regs: list[int] = field(default_factory=lambda: [0, 0, 0])
    subs: list[int] = field(default_factory=lambda: [0, 0, 0])
    lost: str = "-"
    notes: list[str] = field(default_factory=list)
    fails: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, kind: str, attempted: int, r: SippResult) -> None:
        c = getattr(self, kind)
        c[0] += attempted
        c[1] += r.successful
        c[2] += attempted - r.successful

    def need(self, cond: bool, msg: str) -> None:
        if not cond:
            self.fails.append(msg)


def check_sipp(row: Row, h: Harness, r: SippResult, what: str, logs: list[str],
               pattern: str = r"WARN|ERROR|panick") -> None:
    if r.ok():
        return
    msg = f"{what}: {r.describe()}; SIPp log {r.out}, messages {r.msg}"
    errs = r.errors()
    if errs:
        msg += "\n  SIPp errors:\n" + "\n".join("    " + e for e in errs.splitlines())
    msg += "\n" + h.evidence(logs, pattern)
    row.fails.append(msg)


def s1_loss(h: Harness, row: Row) -> None:
    """10 % loss phones<->edge both ways: registrations and calls complete."""
    calls, regs = 30, 20
    h.loss("phones", EDGE_IP, 0.10)
    h.loss("edge", PHONES_IP, 0.10)
    uas_port = h.next_port()
    bulk = h.register("register-bulk", "reg1", regs, 5, h.next_port(), "s1", limit=60)
    callee = h.register("register-callee", "callee1", 1, 1, uas_port, "s1uas", limit=30).wait()
    row.add("regs", 1, callee)
    check_sipp(row, h, callee, "registering the callee under loss", ["registrar", "edge"])
    if not callee.ok():
        bulk.wait()
        return
    uas = h.uas("uas", uas_port, calls, 110)
    uac = h.uac("uac", "callee1", calls, 3, 1000, 100)
    b = bulk.wait()
    row.add("regs", regs, b)
    a, u = uac.wait(), uas.wait()
    row.add("calls", calls, a)
    drops = h.drops()
    h.heal()
    stored = h.bindings("reg1")
    row.lost = f"{max(0, b.successful - stored)} binding(s)"
    row.notes.append(f"dropped: phones {drops.get('phones', 0)}, edge {drops.get('edge', 0)} packets; "
                     f"SIPp retransmissions: uac {a.retransmissions}, uas {u.retransmissions}, "
                     f"register {b.retransmissions}")
    row.need(drops.get("phones", 0) > 0 and drops.get("edge", 0) > 0, "the loss rules dropped nothing")
    check_sipp(row, h, b, f"{regs} registrations under 10% loss", ["registrar", "edge"])
    row.need(stored == b.successful,
             f"{b.successful} registrations acknowledged, {stored} bindings stored for reg1")
    check_sipp(row, h, a, f"{calls} calls under 10% loss (caller)", ["session", "edge"])
    check_sipp(row, h, u, f"{calls} calls under 10% loss (callee)", ["session", "edge"])
    row.need(a.successful == calls, f"{a.successful}/{calls} calls completed at the caller")
    row.need(u.successful == calls, f"{u.successful}/{calls} calls completed at the callee")


def call_diagnosis(uac: Sipp, uas: Sipp | None, limit: int = 5) -> str:
    """What the caller's calls that got no 200 saw, and the callee legs
    sipbus hung up with a Reason (e.g. a 2xx it took for a losing branch)."""
    lines = []
    calls: dict[str, list[str]] = {}
    for m in uac.messages():
        if m.cseq[1] == "INVITE" and not m.sent and m.status:
            calls.setdefault(m.h("call-id"), []).append(str(m.status))
        elif m.method == "INVITE" and m.sent:
            calls.setdefault(m.h("call-id"), [])
    stuck = {c: st for c, st in calls.items() if "200" not in st}
    if stuck:
        lines.append(f"{len(stuck)} call(s) without a 200 at the caller; INVITE answers: "
                     + "; ".join(f"{c}: {' '.join(dict.fromkeys(st)) or 'none'}" for c, st in list(stuck.items())[:limit]))
    if uas is not None:
        reasons: dict[str, str] = {}
        for m in uas.messages():
            if not m.sent and m.method == "BYE" and m.h("reason"):
                reasons.setdefault(m.h("call-id"), m.h("reason"))
        if reasons:
            lines.append(f"{len(reasons)} callee leg(s) got a BYE from sipbus with a Reason: "
                         + "; ".join(f"{c}: {r}" for c, r in list(reasons.items())[:limit])
                         + " (the b-leg Call-ID is sb-<session id>: grep the session-svc logs for it)")
    return "\n  ".join(lines)


def long_calls(h: Harness, row: Row, user: str, calls: int, hold_ms: int, limit: float,
               uas_calls: int | None = None, name: str = "uac") -> tuple[Sipp, Sipp, int]:
    """A registered callee answering calls and a caller placing `calls`,
    each held hold_ms; returns once every call is established (ACKed), or
    after 20 s with what is up (a call that never came up is reported as a
    failure, with what the caller and the callee saw)."""
    port = h.next_port()
    reg = h.register("register-callee", user, 1, 1, port, "uas", limit=20).wait()
    row.add("regs", 1, reg)
    if not reg.ok():
        raise Failure(f"registering the callee {user}: {reg.describe()} ({reg.out})\n"
                      + h.evidence(["registrar", "edge"]))
    uas = h.uas("uas", port, uas_calls or calls, limit + 40)
    uac = h.uac(name, user, calls, 5, hold_ms, limit)
    try:
        wait_for(f"{calls} calls to be established", lambda: acks_sent(uac) >= calls or uac.done(), 20)
    except Failure:
        pass
    up = acks_sent(uac)
    if up < calls:
        row.fails.append(f"only {up}/{calls} calls came up before the fault (no fault injected yet):\n  "
                         + call_diagnosis(uac, uas) + "\n"
                         + h.evidence(["session", "edge", "registrar", "pubsub", "publish"], lines=4))
    return uas, uac, up


def bye_answers(s: Sipp) -> str:
    st = statuses(s.messages(), "BYE")
    return ", ".join(f"{n}x {code}" for code, n in sorted(st.items())) or "none"


def s2_session_cut(h: Harness, row: Row) -> None:
    """session-svc replica 1 cut from Redis while calls are up."""
    calls = 10
    uas, uac, up = long_calls(h, row, "callee2", calls, 10_000, 50)
    answered = h.count_in_logs("session-1", "call answered"), h.count_in_logs("session-2", "call answered")
    h.cut("sess1", "redis")
    log(f"session-1 cut from Redis with {up} calls up (answered by session-1/-2: {answered[0]}/{answered[1]})")
    a = uac.wait()
    u = uas.wait(within=5)
    h.heal()
    row.add("calls", calls, a)
    ended = h.count_in_logs("session-1", "call ended"), h.count_in_logs("session-2", "call ended")
    row.lost = f"{calls - u.successful} callee leg(s) never ended"
    row.notes.append(f"calls answered by session-1/-2: {answered[0]}/{answered[1]}; BYE answers at the caller "
                     f"(SIPp sends a new BYE after an unexpected answer): {bye_answers(uac)}; "
                     f"'call ended' logged by session-1/-2: {ended[0]}/{ended[1]}")
    why = r"session not loaded|BYE not applied|store does not answer|no service answered|replica unreachable"
    check_sipp(row, h, a, f"calls up while session-1 is cut from Redis (caller; BYE answers: {bye_answers(uac)})",
               ["session", "edge"], why)
    check_sipp(row, h, u, "calls up while session-1 is cut from Redis (callee; logs above)", [], why)


def s3_edge_kill(h: Harness, row: Row) -> None:
    """The edge SIGKILLed and restarted on the same address mid-call."""
    calls, after = 10, 10
    uas, uac, up = long_calls(h, row, "callee3", calls, 8000, 45, uas_calls=calls + after, name="uac-before")
    h.stack["edge"].kill(signal.SIGKILL)
    log(f"edge SIGKILLed with {up} calls up; restarting it in 1 s")
    time.sleep(1)
    h.restart_edge(2)
    a = uac.wait()
    row.add("calls", calls, a)
    uac2 = h.uac("uac-after", "callee3", after, 5, 500, 30)
    a2 = uac2.wait()
    row.add("calls", after, a2)
    u = uas.wait(within=5)
    row.lost = f"{calls - a.successful} call(s)"
    row.notes.append(f"BYE answers of the calls up during the restart: {bye_answers(uac)}")
    check_sipp(row, h, a, "calls up while the edge was killed and restarted (caller)", ["edge", "session"])
    check_sipp(row, h, a2, "new calls after the edge restarted (caller)", ["edge", "session"])
    if not a2.ok():
        row.fails.append("new calls: " + call_diagnosis(uac2, uas))
    check_sipp(row, h, u, "callee of both batches", ["edge", "session"])


PIDF = ('<?xml version="1.0"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:{user}@'
        + DOMAIN + '"><tuple id="{tuple}"><status><basic>open</basic></status></tuple></presence>')


def s4_redis_kill(h: Harness, row: Row) -> None:
    """Redis SIGKILLed and restarted with its AOF during calls and
    subscriptions."""
    calls, regs, subs = 10, 10, 20
    r = h.register("register-before", "reg4", regs, 10, h.next_port(), "s4", limit=30).wait()
    row.add("regs", regs, r)
    check_sipp(row, h, r, "registrations before the kill", ["registrar", "edge"])
    watch = h.watchers("watchers", "mwi4", "message-summary", "application/simple-message-summary", subs,
                       45_000, 75, final_re="Voice-Message: 5/")
    uas, uac, up = long_calls(h, row, "callee4", calls, 16_000, 60)
    try:
        wait_for(f"{subs} subscriptions to get their first NOTIFY",
                 lambda: len(notifies_by_call(watch.messages())) >= subs or watch.done(), 10)
    except Failure as e:
        row.fails.append(str(e))
    before = {"bindings": h.bindings("reg4"), "subscriptions": h.keys("sub:{*"), "sessions": h.keys("sess:*")}
    log(f"before the kill ({up} calls up): {before}")
    h.stack["redis"].kill(signal.SIGKILL)
    log("Redis SIGKILLed; probing with REGISTER, SUBSCRIBE, INVITE and PUBLISH")
    probes = [
        ("REGISTER", h.register("outage-register", "reg4", 2, 2, h.next_port(), "outage", limit=20,
                                scenario=CHAOS_DIR / "register_503.xml")),
        ("SUBSCRIBE", h.request("outage-subscribe", "SUBSCRIBE", "mwi4", "watcher",
                                ["Event: message-summary", "Accept: application/simple-message-summary",
                                 "Expires: 600"], "", 503, "Retry-After:", "[0-9]+", calls=2)),
        ("INVITE", h.uac("outage-invite", "callee4", 2, 2, 0, 20, sf=CHAOS_DIR / "invite_503.xml")),
        ("PUBLISH", h.request("outage-publish", "PUBLISH", "pres4", "pres4",
                              ["Event: presence", "Expires: 600", "Content-Type: application/pidf+xml"],
                              PIDF.format(user="pres4", tuple="outage"), 503, "Retry-After:", "[0-9]+",
                              calls=2)),
    ]
    outage_answers = []
    probes_ok = 0
    for method, p in probes:
        res = p.wait()
        probes_ok += res.successful
        answers = statuses(p.messages(), method)
        seen = ", ".join(f"{n}x {c}" for c, n in sorted(answers.items())) or "no answer"
        outage_answers.append(f"{method}: {seen}")
        check_sipp(row, h, res, f"{method} during the Redis outage must get 503 with Retry-After "
                   f"(answers seen: {seen})", ["edge", "registrar", "session", "pubsub", "publish"])
    log("restarting Redis from its append-only file")
    h.start_redis()
    after = {"bindings": h.bindings("reg4"), "subscriptions": h.keys("sub:{*"), "sessions": h.keys("sess:*")}
    log(f"after the restart: {after}")
    lost = {k: before[k] - after[k] for k in before if after[k] < before[k]}
    row.lost = ", ".join(f"{v} {k}" for k, v in lost.items()) or "0"
    row.need(before["bindings"] == r.successful,
             f"{r.successful} registrations acknowledged but {before['bindings']} bindings stored before the kill")
    row.need(not lost, f"acknowledged state lost across the Redis restart: before {before}, after {after}")
    # Services reconnect; the first attempts may get 503 meanwhile.
    m = h.mwi_set("mwi4", 5, attempts=10)
    row.need(m.returncode == 0, f"`sipbus mwi set` after the restart failed: {m.stdout}{m.stderr}")
    again = None
    for i in range(8):
        again = h.register(f"register-after-{i}", "reg4", 1, 1, h.next_port(), f"after{i}", limit=15).wait()
        if again.ok():
            break
        time.sleep(0.5)
    assert again is not None
    row.add("regs", 1, again)
    row.need(again.ok(), f"registering after the restart never worked: {again.describe()}")
    a = uac.wait()
    u = uas.wait(within=5)
    w = watch.wait()
    row.add("calls", calls, a)
    row.add("subs", subs, w)
    by_call = notifies_by_call(watch.messages())
    dups, dup_notes, wrong = judge_notifies(by_call, r"Voice-Message: 5/")
    row.notes.append(f"outage probes: {probes_ok}/8 answered 503 with Retry-After ("
                     + "; ".join(outage_answers) + ")")
    row.notes.append(f"store before/after the restart: {before} / {after}; BYE answers: {bye_answers(uac)}; "
                     f"NOTIFY duplicates {dups}" + (f" ({'; '.join(dup_notes[:3])})" if dups else ""))
    check_sipp(row, h, a, f"calls up across the Redis restart (caller; BYE answers {bye_answers(uac)})",
               ["session", "edge"])
    check_sipp(row, h, u, "calls up across the Redis restart (callee)", ["session", "edge"])
    check_sipp(row, h, w, "subscriptions across the Redis restart", ["pubsub", "publish", "edge"])
    row.need(len(by_call) == subs, f"{len(by_call)}/{subs} watchers got NOTIFYs")
    row.need(not wrong, f"{len(wrong)} watcher(s) never saw the state set after the restart: "
             + "; ".join(wrong[:5]))


def reached(by_call: dict[str, list[Notify]], pattern: str) -> int:
    """Subscriptions that received a (non-terminated) NOTIFY matching pattern."""
    return sum(1 for lst in by_call.values()
               if any(re.search(pattern, n.body) and not n.state.startswith("terminated") for n in lst))


def s5_pubsub_cut(h: Harness, row: Row) -> None:
    """pubsub-svc replica 1 partitioned from Redis while changes fan out."""
    n = 30
    mwi_mid, mwi_end = r"Voice-Message: 7/0", r"Voice-Message: 9/0"
    pres_mid, pres_end = r'id="chaos5"', r'id="end5"'
    mwi = h.watchers("watchers-mwi", "mwi5", "message-summary", "application/simple-message-summary", n,
                     60_000, 100, final_re="Voice-Message: 9/")
    pres = h.watchers("watchers-presence", "pres5", "presence", "application/pidf+xml", n, 60_000, 100,
                      final_re='id=.end5.')  # no quote: it sits in an XML attribute
    wait_for(f"{2 * n} subscriptions to get their first NOTIFY",
             lambda: (len(notifies_by_call(mwi.messages())) >= n and len(notifies_by_call(pres.messages())) >= n)
             or mwi.done() or pres.done(), 15)
    subs_stored = h.keys("sub:{*")
    recovered_before = h.count_in_logs("pubsub-1", "store answers again")
    # Cut while the first change fans out: as soon as its first NOTIFY
    # reaches the phones (a counting rule there sees it).
    h.rule("phones", ["-s", EDGE_IP, "-p", "udp", "-m", "comment", "--comment", "count-notify"])
    base = h.counted("phones", "count-notify")
    first = h.mwi_set_async("mwi5", 1)
    end = time.monotonic() + 5
    while h.counted("phones", "count-notify") == base and time.monotonic() < end:
        time.sleep(0.005)
    h.cut("pubsub1", "redis")
    at_cut = h.counted("phones", "count-notify") - base
    log(f"pubsub-1 cut from Redis during the first change's fan-out ({at_cut}/{n} of its NOTIFYs sent)")
    out, _ = first.communicate(timeout=BUDGET.bound(15))
    row.need(first.returncode == 0, f"mwi set 1 during the partition: {out}")
    time.sleep(1)
    reg = h.register("register-pres5", "pres5", 1, 1, h.next_port(), "s5", limit=20).wait()
    row.add("regs", 1, reg)
    check_sipp(row, h, reg, "registration change of pres5 during the partition", ["registrar", "edge"])
    time.sleep(1)
    m2 = h.mwi_set("mwi5", 2)
    row.need(m2.returncode == 0, f"mwi set 2 during the partition: {m2.stdout}{m2.stderr}")
    time.sleep(1)
    pub = h.request("publish-chaos5", "PUBLISH", "pres5", "pres5",
                    ["Event: presence", "Expires: 600", "Content-Type: application/pidf+xml"],
                    PIDF.format(user="pres5", tuple="chaos5"), 200, "SIP-ETag:", "[0-9a-f]{32}").wait()
    check_sipp(row, h, pub, "PUBLISH during the partition", ["publish", "edge"])
    time.sleep(1)
    m7 = h.mwi_set("mwi5", 7)
    row.need(m7.returncode == 0, f"mwi set 7 during the partition: {m7.stdout}{m7.stderr}")
    # Every watcher gets the partition's last states (pubsub-2 alone, and a
    # change pubsub-1 had taken reclaimed after 3 s).
    try:
        wait_for("every watcher to get the last states set during the partition",
                 lambda: reached(notifies_by_call(mwi.messages()), mwi_mid) >= n
                 and reached(notifies_by_call(pres.messages()), pres_mid) >= n, 10)
    except Failure:
        pass
    mid = reached(notifies_by_call(mwi.messages()), mwi_mid), reached(notifies_by_call(pres.messages()), pres_mid)
    drops = h.drops()
    h.heal()
    # pubsub-1 serves again once its log shows no store failure for 3 s
    # (its readiness probe may say "store answers again" earlier, while
    # requests still time out behind what queued up on its connection).
    healed_wall = time.time()
    try:
        wait_for("pubsub-1 to serve again after the heal (no store failure logged for 3 s)",
                 lambda: time.time() - max(healed_wall, h.last_log_time("pubsub-1", "store unavailable")) >= 3,
                 40, every=0.5)
        recovery = f"{max(0.0, h.last_log_time('pubsub-1', 'store unavailable') - healed_wall):.1f}s"
    except Failure as e:
        recovery = "not within 40 s"
        row.fails.append(f"{e}\n" + h.evidence(["pubsub-1"]))
    ready = h.count_in_logs("pubsub-1", "store answers again") > recovered_before
    log(f"partition healed; pubsub-1's last store failure {recovery} after the heal")
    # What pubsub-1 resumes after the heal would show now as a late or
    # repeated NOTIFY; then the last changes end the subscriptions.
    time.sleep(2)
    m9 = h.mwi_set("mwi5", 9, attempts=5)
    row.need(m9.returncode == 0, f"mwi set 9 after the heal: {m9.stdout}{m9.stderr}")
    pub2 = h.request("publish-end5", "PUBLISH", "pres5", "pres5",
                     ["Event: presence", "Expires: 600", "Content-Type: application/pidf+xml"],
                     PIDF.format(user="pres5", tuple="end5"), 200, "SIP-ETag:", "[0-9a-f]{32}").wait()
    check_sipp(row, h, pub2, "PUBLISH after the heal", ["publish", "edge"])
    rm, rp = mwi.wait(within=20), pres.wait(within=20)
    row.add("subs", n, rm)
    row.add("subs", n, rp)
    bm, bp = notifies_by_call(mwi.messages()), notifies_by_call(pres.messages())
    dm, dm_notes, wm = judge_notifies(bm, mwi_end)
    dp, dp_notes, wp = judge_notifies(bp, pres_end)
    row.lost = f"{(n - mid[0]) + (n - mid[1]) + len(wm) + len(wp)} missed state(s)"
    row.notes.append(f"NOTIFY duplicates: message-summary {dm}, presence {dp}; watchers that got the "
                     f"partition's last state: {mid[0]}/{n} mwi, {mid[1]}/{n} presence; NOTIFYs of the first change "
                     f"out when the cut began {at_cut}/{n}; subscriptions stored "
                     f"{subs_stored}; packets dropped {drops}; pubsub-1's last store failure {recovery} after the heal "
                     f"(readiness probe saw the store again: {ready}); "
                     f"unsubscribe answers: mwi {statuses(mwi.messages(), 'SUBSCRIBE')}, "
                     f"presence {statuses(pres.messages(), 'SUBSCRIBE')}")
    row.need(len(bm) == n and len(bp) == n, f"watchers with NOTIFYs: {len(bm)}/{n} mwi, {len(bp)}/{n} presence")
    row.need(mid == (n, n), f"during the partition only {mid[0]}/{n} mwi watchers got {mwi_mid!r} and "
             f"{mid[1]}/{n} presence watchers got {pres_mid!r}\n" + h.evidence(["pubsub"]))
    row.need(dm + dp == 0, f"{dm + dp} duplicate NOTIFY(s): " + "; ".join((dm_notes + dp_notes)[:6])
             + "\n" + h.evidence(["pubsub"]))
    row.need(not wm and not wp, f"{len(wm) + len(wp)} watcher(s) ended in a wrong state: "
             + "; ".join((wm + wp)[:6]))
    why = r"refused|not removed|store does not answer|WARN pubsub_svc::notify|ERROR"
    check_sipp(row, h, rm, "message-summary watchers", ["pubsub", "publish", "edge"], why)
    check_sipp(row, h, rp, "presence watchers", ["pubsub", "publish", "edge"], why)


SCENARIO_LIST = [
    ("1", "loss", "10% loss phones<->edge", s1_loss),
    ("2", "session-cut", "session-1 cut from Redis mid-call", s2_session_cut),
    ("3", "edge-kill", "edge SIGKILL + restart mid-call", s3_edge_kill),
    ("4", "redis-kill", "Redis SIGKILL + AOF restart", s4_redis_kill),
    ("5", "pubsub-cut", "pubsub-1 partitioned from Redis", s5_pubsub_cut),
]


def summary(rows: list[Row]) -> str:
    head = ["scenario", "result", "calls att/ok/fail", "regs att/ok/fail", "subs att/ok/fail",
            "lost state", "time"]
    body = []
    for r in rows:
        body.append([r.scenario, "PASS" if not r.fails else "FAIL", "/".join(map(str, r.calls)),
                     "/".join(map(str, r.regs)), "/".join(map(str, r.subs)), r.lost, f"{r.seconds:.0f}s"])
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(b) for b in body]
    for r in rows:
        for n in r.notes:
            out.append(f"  {r.scenario}: {n}")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", help="scenario numbers or names (default: all)")
    ap.add_argument("--cleanup", action="store_true", help="only remove what an earlier run left")
    args = ap.parse_args()

    if os.geteuid() != 0:
        print("SKIP: tests/chaos/chaos.py needs root (network namespaces, iptables)")
        return 0
    if args.cleanup:
        cleanup_all()
        left = our_namespaces()
        print("cleanup: nothing left" if not left else f"cleanup: still there: {left}")
        return 0 if not left else 2

    missing = [t for t in ("sipp", "redis-server", "redis-cli", "iptables", "ip") if not shutil.which(t)]
    binary = Path(os.environ.get("SIPBUS_BIN", REPO / "target" / "debug" / "sipbus"))
    if not binary.is_absolute():
        binary = REPO / binary
    if missing or not os.access(binary, os.X_OK):
        print(f"chaos: missing {missing or ''} {'' if os.access(binary, os.X_OK) else binary}", file=sys.stderr)
        return 2
    wanted = [s for s in SCENARIO_LIST if not args.scenarios or s[0] in args.scenarios or s[1] in args.scenarios]

    base = os.environ.get("SBCHAOS_DIR")
    rundir = Path(base) if base else Path(tempfile.mkdtemp(prefix="sbchaos-"))
    rundir.mkdir(parents=True, exist_ok=True)
    h = Harness(binary.resolve(), rundir)

    done = {"yes": False}

    def teardown() -> None:
        if done["yes"]:
            return
        done["yes"] = True
        for p in h.procs:
            if p.running():
                p.kill()
        cleanup_all(quiet=True)
        left = our_namespaces()
        if left:
            print(f"chaos: WARNING: could not remove {left}; run with --cleanup", file=sys.stderr)

    atexit.register(teardown)

    def on_signal(signum, _frame):
        raise SystemExit(f"chaos: interrupted by signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    rows: list[Row] = []
    started = time.monotonic()
    try:
        cleanup_all()  # what a killed earlier run left
        log(f"binary {binary}; logs under {rundir}")
        h.topology_up()
        h.write_config()
        for num, name, title, fn in wanted:
            row = Row(f"{num} {name}")
            rows.append(row)
            t0 = time.monotonic()
            log(f"scenario {num}: {title}")
            try:
                h.start_stack(f"{num}-{name}")
                fn(h, row)
            except Failure as e:
                row.fails.append(str(e))
            except SetupError as e:
                row.fails.append(f"setup: {e}")
            finally:
                h.stop_stack(keep_data=bool(row.fails))
                row.seconds = time.monotonic() - t0
            log(f"scenario {num}: {'PASS' if not row.fails else 'FAIL'} in {row.seconds:.0f}s")
    except SetupError as e:
        print(f"chaos: setup failed: {e}", file=sys.stderr)
        return 2
    finally:
        teardown()

    report = [f"sipbus chaos summary ({time.monotonic() - started:.0f}s, logs under {rundir}):", summary(rows)]
    failed = [r for r in rows if r.fails]
    for r in failed:
        report.append(f"\nFAILED: scenario {r.scenario} ({h.rundir / r.scenario.replace(' ', '-')}):")
        for f in r.fails:
            report.append("  - " + f.replace("\n", "\n    "))
    report.append(f"\nchaos: {len(failed)} scenario(s) failed" if failed else "\nchaos: all scenarios passed")
    text = "\n".join(report)
    print("\n" + text, flush=True)
    try:
        (rundir / "summary.txt").write_text(text + "\n")
    except OSError:
        pass
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
