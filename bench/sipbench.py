#!/usr/bin/env python3
"""The benchmark method shared by bench/register.sh, calls.sh, events.sh and
options.sh (run through bench/lib.sh; README "## Benchmarks").

Per target and workload:
  probe    closed loop: SIPp with PROBE_CALLS calls in flight at an
           unbounded rate for PROBE_SECS; its achieved calls/s.
  sweep    open loop at FRACTIONS of the probe (-r R -m R*secs), each step
           RUNS times; a step's figures are the medians of its runs. A step
           passes with no failed or unfinished call, at most 1 %
           retransmitted messages (SIPp's Retransmissions(C) over the
           messages it sent) and at most 1 % of response times over 50 ms
           (the ResponseTimeRepartition of the scenario's first
           request/answer, rtd). The knee is the highest passing rate; two
           failing steps in a row end the sweep.
  hold     memory per held item on a fresh server: RSS and PSS growth of
           every server process (smaps_rollup, children included), Redis
           used_memory growth and MEMORY USAGE of one record.
Every step also gives the kernel's UDP receive errors during the step
(/proc/net/snmp) and the servers' CPU time per transaction (utime + stime of
every server process and its children over CLK_TCK).

Commands (python3 bench/sipbench.py COMMAND ...):
  cpu PID...                  CPU ticks used so far by these processes and
                              their descendants
  mem PID...                  "RSS_KIB PSS_KIB" of the same
  counts STAT...              "OK FAILED RETRANSMITTED SECONDS" summed over
                              -trace_stat files (seconds: the longest)
  sockbuf PORT                the receive and send buffers of the UDP socket
                              bound to PORT
  sweep [options] -- SIPP...  probe and sweep one target, append the knee to
                              --results
  hold [options] -- SIPP...   the memory phase, appended to --results
  fanout LOG T0               ms from T0 to the last answered fan-out NOTIFY
  note RESULTS WORKLOAD TARGET TEXT   a line for the report
  report RESULTS [WORKLOAD]   the summary tables with the ratios to Kamailio
"""

import argparse
import csv
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = int(os.environ.get("CLK_TCK") or os.sysconf("SC_CLK_TCK"))
# Response time buckets (ms) written into every scenario; 50 must be one.
BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
LIMIT_MS = 50
MAX_RETRANS_PCT = 1.0
MAX_SLOW_PCT = 1.0
BUFF = "4194304"


# ---------------------------------------------------------------- /proc


def descendants(pids):
    """The processes and every process they started, as found now."""
    todo, seen = [int(p) for p in pids], []
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return seen


def cpu_ticks(pids):
    total = 0
    for pid in descendants(pids):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def memory_kib(pids):
    rss = pss = 0
    for pid in descendants(pids):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def udp_errors():
    """(RcvbufErrors, InErrors) of the Udp: line of /proc/net/snmp."""
    with open("/proc/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Udp:")]
    values = dict(zip(lines[0][1:], lines[1][1:]))
    return int(values["RcvbufErrors"]), int(values["InErrors"])


def sockbuf(port):
    out = subprocess.run(["ss", "-Huanm", f"sport = :{port}"], capture_output=True, text=True).stdout
    m = re.search(r"rb(\d+),t\d+,tb(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def redis(port, *args):
    if not port:
        return ""
    out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def redis_used(port):
    m = re.search(r"^used_memory:(\d+)", redis(port, "info", "memory"), re.M)
    return int(m.group(1)) if m else 0


def redis_commands(port):
    return sum(int(n) for n in re.findall(r"calls=(\d+)", redis(port, "info", "commandstats")))


def redis_record(port, pattern):
    """MEMORY USAGE of one key matching pattern, or None."""
    cursor = "0"
    for _ in range(1000):
        out = redis(port, "scan", cursor, "match", pattern, "count", "1000").split()
        if not out:
            return None
        cursor, keys = out[0], out[1:]
        if keys:
            usage = redis(port, "memory", "usage", keys[0])
            return int(usage) if usage.isdigit() else None
        if cursor == "0":
            return None
    return None


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- SIPp


def derive_scenario(src, dst):
    """Copies a scenario with response-time statistics: rtd on the first
    mandatory response when the scenario names none, and the bucket table
    (after the rtd, where SIPp wants it). Returns the number of messages
    SIPp sends per call."""
    with open(src) as f:
        text = f.read()
    if "rtd=" not in text:
        text = re.sub(r'<recv response="[^"]*"(?![^>]*optional="true")', lambda m: m.group(0) + ' rtd="true"', text, count=1)
    table = ", ".join(str(b) for b in BUCKETS)
    text = text.replace("</scenario>", f'  <ResponseTimeRepartition value="{table}"/>\n</scenario>')
    with open(dst, "w") as f:
        f.write(text)
    return len(re.findall(r"<send\b", text))


def epoch(field):
    # "2024-12-05\t11:02:07.435507\t1733396527.435507"
    return float(field.split("\t")[-1])


def read_stat(path):
    """Header and rows of a -trace_stat file (as dicts), [] if none."""
    try:
        with open(path) as f:
            rows = [r for r in csv.reader(f, delimiter=";") if r]
    except OSError:
        return []
    if len(rows) < 2:
        return []
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def stat_figures(rows):
    """One run's figures from its stat rows."""
    if not rows:
        return dict(ok=0, failed=0, created=0, retrans=0, elapsed=0.0, buckets=[0] * (len(BUCKETS) + 1))
    last = rows[-1]
    buckets = []
    for b in BUCKETS:
        buckets.append(int(last.get(f"ResponseTimeRepartition1_<{b}", 0) or 0))
    buckets.append(int(last.get(f"ResponseTimeRepartition1_>={BUCKETS[-1]}", 0) or 0))
    return dict(
        ok=int(last["SuccessfulCall(C)"]),
        failed=int(last["FailedCall(C)"]),
        created=int(last["TotalCallCreated"]),
        retrans=int(last["Retransmissions(C)"]),
        elapsed=epoch(last["CurrentTime"]) - epoch(last["StartTime"]),
        buckets=buckets,
    )


def bucket_label(i):
    return f"<{BUCKETS[i]}ms" if i < len(BUCKETS) else f">={BUCKETS[-1]}ms"


class Child:
    """A SIPp run, killed if this process is interrupted."""

    current = None

    def __init__(self, cmd, cwd):
        self.p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        Child.current = self

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        finally:
            if Child.current is self:
                Child.current = None

    def poll(self):
        return self.p.poll()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def on_signal(signum, _frame):
    if Child.current:
        Child.current.kill()
    sys.exit(128 + signum)


class Target:
    def __init__(self, a, sipp_args, scenario=None):
        self.a = a
        self.sipp_args = sipp_args
        self.servers = [int(p) for p in a.servers.split(",") if p]
        self.work = tempfile.mkdtemp(prefix="sipbench-", dir=a.work)
        scenario = scenario or a.scenario
        self.scenario = os.path.join(self.work, os.path.basename(scenario))
        self.sends = derive_scenario(scenario, self.scenario)
        self.logs = os.environ.get("LOGS") or ""

    def sipp(self, tag, args):
        d = tempfile.mkdtemp(dir=self.work)
        cmd = ["sipp", f"127.0.0.1:{self.a.port}", "-sf", self.scenario, "-i", "127.0.0.1", "-p", str(free_udp_port()),
               "-t", "u1", "-buff_size", BUFF, "-nostdin", "-trace_stat", "-stf", "stat.csv", "-fd", "1"]
        if self.logs:
            cmd += ["-trace_err", "-error_file", os.path.join(self.logs, f"{self.a.target}-{self.a.label}-{tag}.err".replace(" ", "_").replace("/", "_"))]
        return d, cmd + self.sipp_args + args

    def watched_alive(self):
        if not self.a.watch:
            return True
        try:
            os.kill(self.a.watch, 0)
            return True
        except OSError:
            return False


# ---------------------------------------------------------------- sweep


def probe(t):
    a = t.a
    d, cmd = t.sipp("probe", ["-r", "1000000", "-l", str(a.probe_calls), "-m", "1000000000", "-timeout", f"{a.probe_secs:g}s"])
    Child(cmd, d).wait(a.probe_secs + 30)
    rows = read_stat(os.path.join(d, "stat.csv"))
    if not rows:
        return 0.0, 0
    t0 = epoch(rows[0]["StartTime"])
    steady = [r for r in rows if epoch(r["CurrentTime"]) - t0 >= 1.0]
    last = rows[-1]
    failed = int(last["FailedCall(C)"])
    if len(steady) >= 2:
        first, last = steady[0], steady[-1]
        dt = epoch(last["CurrentTime"]) - epoch(first["CurrentTime"])
        ok = int(last["SuccessfulCall(C)"]) - int(first["SuccessfulCall(C)"])
        return (ok / dt if dt > 0 else 0.0), failed
    el = epoch(last["CurrentTime"]) - t0
    return (int(last["SuccessfulCall(C)"]) / el if el > 0 else 0.0), failed


def step(t, rate, run):
    a = t.a
    calls = max(1, round(rate * a.secs))
    # Open loop: a limit on calls in flight far above what a passing step
    # holds, and a hard end TAIL seconds after the last call is due (a
    # call not finished by then fails the step anyway).
    limit = max(2000, rate * 2)
    d, cmd = t.sipp(f"{rate}-{run}", ["-r", str(rate), "-m", str(calls), "-l", str(limit),
                                      "-recv_timeout", str(int(a.tail * 1000)), "-timeout", f"{a.secs + a.tail:g}s"])
    ticks0, udp0 = cpu_ticks(t.servers), udp_errors()
    cmds0 = redis_commands(a.redis_port) if a.redis_port else 0
    Child(cmd, d).wait(a.secs + a.tail + 30)
    ticks1, udp1 = cpu_ticks(t.servers), udp_errors()
    cmds1 = redis_commands(a.redis_port) if a.redis_port else 0
    f = stat_figures(read_stat(os.path.join(d, "stat.csv")))
    total = sum(f["buckets"])
    slow = sum(f["buckets"][BUCKETS.index(LIMIT_MS) + 1:])
    cum, p99 = 0, len(BUCKETS)
    for i, n in enumerate(f["buckets"]):
        cum += n
        if total and cum >= 0.99 * total:
            p99 = i
            break
    ok = f["ok"]
    cpu_s = (ticks1 - ticks0) / CLK_TCK
    return dict(
        rate=rate, calls=calls, ok=ok, failed=f["failed"], unfinished=max(0, calls - ok - f["failed"]),
        achieved=ok / f["elapsed"] if f["elapsed"] > 0 else 0.0,
        retrans_pct=100.0 * f["retrans"] / max(1, f["created"] * t.sends),
        slow_pct=100.0 * slow / total if total else 100.0,
        p99=p99,
        rcvbuf_err=udp1[0] - udp0[0], in_err=udp1[1] - udp0[1],
        cpu_tx=cpu_s * 1e6 / (ok * a.tx) if ok else math.nan,
        redis_tx=(cmds1 - cmds0) / (ok * a.tx) if ok and a.redis_port else math.nan,
    )


def passes(s):
    return s["failed"] == 0 and s["unfinished"] == 0 and s["retrans_pct"] <= MAX_RETRANS_PCT and s["slow_pct"] <= MAX_SLOW_PCT


def settled_failure(runs, planned):
    """A majority of the planned runs broke one rule: the medians fail
    whatever the other runs give, so they are not run."""
    need = planned // 2 + 1
    if len(runs) < need or len(runs) == planned:
        return False
    rules = [lambda s: s["failed"] > 0, lambda s: s["unfinished"] > 0,
             lambda s: s["retrans_pct"] > MAX_RETRANS_PCT, lambda s: s["slow_pct"] > MAX_SLOW_PCT]
    return any(sum(1 for r in runs if rule(r)) >= need for rule in rules)


def median_step(runs):
    m = {}
    for k in runs[0]:
        vals = [r[k] for r in runs if not (isinstance(r[k], float) and math.isnan(r[k]))]
        m[k] = statistics.median(vals) if vals else math.nan
    m["p99"] = int(statistics.median_low([r["p99"] for r in runs]))
    m["rate"] = runs[0]["rate"]
    m["runs"] = len(runs)
    return m


def fmt(v, spec):
    return "-" if isinstance(v, float) and math.isnan(v) else format(v, spec)


STEP_HEAD = (f"{'target':<24} {'workload':<20} {'step':>5} {'offered':>8} {'achieved':>8} {'failed':>6} {'unfin':>5} "
             f"{'retr%':>6} {'>50ms%':>6} {'p99':>8} {'udp rcvbuf/in':>13} {'µs/tx':>6} {'µs/call':>7}")


def step_line(a, frac, s, verdict):
    udp = f"{s['rcvbuf_err']:g}/{s['in_err']:g}"
    line = (f"{a.target:<24} {a.label:<20} {frac:>5} {s['rate']:>8} {s['achieved']:>8.0f} {s['failed']:>6g} {s['unfinished']:>5g} "
            f"{s['retrans_pct']:>6.2f} {s['slow_pct']:>6.2f} {bucket_label(s['p99']):>8} {udp:>13} "
            f"{fmt(s['cpu_tx'], '.0f'):>6} {fmt(s['cpu_tx'] * a.tx, '.0f'):>7}")
    if a.redis_port:
        line += f" redis_cmds/tx {fmt(s['redis_tx'], '.1f')}"
    return line + f" {verdict}"


def cmd_sweep(a, sipp_args):
    began = time.time()
    t = Target(a, sipp_args)
    rates, fractions = [], []
    probe_rate = probe_failed = None
    if a.rates:
        rates = [int(r) for r in a.rates.split()]
        fractions = ["-"] * len(rates)
    else:
        probe_rate, probe_failed = probe(t)
        print(f"{a.target:<24} {a.label:<20} probe: {probe_rate:.0f} calls/s closed loop ({a.probe_calls} in flight, "
              f"{a.probe_secs:g} s, {probe_failed} failed)", flush=True)
        seen = set()
        for f in a.fractions.split():
            r = max(1, round(float(f) * probe_rate))
            if r not in seen:
                seen.add(r)
                rates.append(r)
                fractions.append(f)
    print(STEP_HEAD, flush=True)
    knee, knee_step, failing, last_passed = 0, None, 0, False
    for frac, rate in zip(fractions, rates):
        runs = []
        for run in range(a.runs):
            if not t.watched_alive():
                break
            runs.append(step(t, rate, run))
            if os.environ.get("VERBOSE"):
                print("  run", run + 1, step_line(a, frac, runs[-1], "pass" if passes(runs[-1]) else "fail"), flush=True)
            time.sleep(a.gap)
            if settled_failure(runs, a.runs):
                break
        if not runs:
            print(f"{a.target}: the process {a.watch} the runs need has ended", file=sys.stderr)
            break
        m = median_step(runs)
        ok = passes(m)
        verdict = "PASS" if ok else "FAIL"
        if len(runs) < a.runs:
            verdict += f" ({len(runs)} of {a.runs} runs: settled)"
        print(step_line(a, frac, m, verdict), flush=True)
        last_passed = ok
        if ok:
            knee, knee_step, failing = rate, m, 0
        else:
            failing += 1
            if failing >= 2:
                break
    cpu = knee_step["cpu_tx"] if knee_step else math.nan
    # The highest step passed: the knee is higher still.
    above = bool(rates) and last_passed and knee == rates[-1]
    print(f"{a.target:<24} {a.label:<20} knee {knee}{'+' if above else ''} calls/s ({knee * a.tx} tx/s), {fmt(cpu, '.0f')} µs/tx"
          f"{'' if a.tx == 1 else ', ' + fmt(cpu * a.tx, '.0f') + ' µs/call'}"
          f"{'' if probe_rate is None else f', probe {probe_rate:.0f}'} ({time.time() - began:.0f} s)", flush=True)
    record(a.results, dict(kind="knee", workload=a.workload, label=a.label, target=a.target, tx=a.tx, knee=knee, above=above,
                           probe=probe_rate, cpu_tx=None if math.isnan(cpu) else cpu, runs=a.runs, secs=a.secs))


# ---------------------------------------------------------------- memory


def cmd_hold(a, sipp_args):
    t = Target(a, sipp_args)
    n, rate = a.held, a.rate
    fill_s = n / rate
    args = ["-r", str(rate), "-m", str(n), "-l", str(n + 1000)]
    deadline_s = fill_s * 3 + 30
    if a.pause:
        # Held past the measure: the caller ends them when it is stopped.
        args += ["-d", str(int((deadline_s + a.settle + 30) * 1000))]
    if os.environ.get("VERBOSE"):
        print(f"  fresh: RSS, PSS {memory_kib(t.servers)} KiB", flush=True)
    if a.warm:
        a.warm_calls = a.warm_calls or max(100, n // 50)
        # The first requests a fresh server sees allocate what any traffic
        # needs (buffers, per-thread caches): a warm-up that holds nothing
        # (a call, a subscription or a registration that ends), then the
        # baseline once its transactions are gone too.
        w = Target(a, sipp_args, scenario=a.warm)
        d, cmd = w.sipp("warm", ["-r", str(rate), "-m", str(a.warm_calls), "-l", str(a.warm_calls), "-d", "0"])
        Child(cmd, d).wait(a.warm_calls / rate + 60)
        time.sleep(a.settle)
    rss0, pss0 = memory_kib(t.servers)
    each0 = {p: memory_kib([p]) for p in t.servers}
    used0 = redis_used(a.redis_port) if a.redis_port else 0
    d, cmd = t.sipp("hold", args)
    child = Child(cmd, d)
    stat = os.path.join(d, "stat.csv")
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        time.sleep(0.5)
        ended = child.poll() is not None
        rows = read_stat(stat)
        if rows:
            last = rows[-1]
            done = int(last["SuccessfulCall(C)"]) + int(last["CurrentCall"]) + int(last["FailedCall(C)"])
            if int(last["TotalCallCreated"]) >= n and done >= n:
                break
        if ended:
            break
    # The transactions that made them gone (Timer J / L / M, tm's wait).
    time.sleep(a.settle)
    rss1, pss1 = memory_kib(t.servers)
    if os.environ.get("VERBOSE"):
        for p in t.servers:
            r, q = memory_kib([p])
            print(f"  process {p}: RSS {each0[p][0]} -> {r} KiB, PSS {each0[p][1]} -> {q} KiB", flush=True)
    used1 = redis_used(a.redis_port) if a.redis_port else 0
    rec = redis_record(a.redis_port, a.record) if a.redis_port and a.record else None
    rows = read_stat(stat)
    held = failed = 0
    if rows:
        # Held: calls in their pause; registrations and subscriptions made
        # (a watcher waits for its NOTIFY or has had it: both still hold).
        held = int(rows[-1]["CurrentCall"]) + (0 if a.pause else int(rows[-1]["SuccessfulCall(C)"]))
        failed = int(rows[-1]["FailedCall(C)"])
    # Released: the SIPp side ends (the server is stopped next).
    child.kill()
    per = 10000 / held if held else math.nan
    line = (f"{a.target:<24} memory: {held} held {a.item}s ({failed} failed) after {a.settle:g} s: "
            f"RSS {rss1 - rss0:+d} KiB, PSS {pss1 - pss0:+d} KiB; per 10,000: RSS {(rss1 - rss0) * per / 1024:+.1f} MiB, "
            f"PSS {(pss1 - pss0) * per / 1024:+.1f} MiB")
    if a.redis_port:
        line += f", Redis used_memory {(used1 - used0) * per / 2**20:+.1f} MiB"
        if rec is not None:
            line += f", MEMORY USAGE of one {a.record} record {rec} B"
    print(line, flush=True)
    record(a.results, dict(kind="mem", workload=a.workload, label=a.label, target=a.target, item=a.item, held=held,
                           failed=failed, rss_kib=rss1 - rss0, pss_kib=pss1 - pss0,
                           redis_bytes=(used1 - used0) if a.redis_port else None, record_bytes=rec))


# ---------------------------------------------------------------- report


def record(path, obj):
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(obj) + "\n")


def per_10k(value, held):
    return value * 10000 / held if held and value is not None else math.nan


def ratio(x, k):
    if x is None or k is None or math.isnan(x) or math.isnan(k) or k <= 0 or x <= 0:
        return "-"
    return f"{x / k:.2f}x"


def cmd_report(path, only=None):
    """Per workload: target | knee | probe | CPU µs per tx and per call at
    the knee | memory per 10,000 held items; then each sipbus target over
    Kamailio."""
    try:
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except OSError:
        rows = []
    workloads = []
    for r in rows:
        if r["workload"] not in workloads and (only is None or r["workload"] == only):
            workloads.append(r["workload"])
    for w in workloads:
        knees = [r for r in rows if r["workload"] == w and r["kind"] == "knee"]
        mems = {r["target"]: r for r in rows if r["workload"] == w and r["kind"] == "mem"}
        mem_label = next((r["label"] for r in mems.values()), None)
        print()
        if knees:
            print(f"== {w}: knee = highest open-loop calls/s with 0 failed, <= {MAX_RETRANS_PCT:g} % retransmitted, "
                  f"<= {MAX_SLOW_PCT:g} % answers over {LIMIT_MS} ms; medians of {knees[0]['runs']} run(s) per "
                  f"step; +: the highest step passed")
        else:
            print(f"== {w}")
        if mems:
            item = next(iter(mems.values()))["item"]
            print(f"   memory: growth per 10,000 held {item}s, RSS and PSS of every server process (MiB), "
                  f"Redis used_memory (MiB), MEMORY USAGE of one record (B)")
        names = [r["target"] for r in knees] + list(mems)
        kams = [n for n in names if n.split("@")[0] == "kamailio"]
        tw = max([24] + [len(n) for n in names] + [len(n) + 3 + len(kams[0]) for n in names if kams])
        cols = [("workload", 20), ("target", tw), ("knee", 8), ("probe", 7), ("µs/tx", 6), ("µs/call", 7)]
        if mems:
            cols += [("RSS", 7), ("PSS", 7), ("Redis", 7), ("record", 6)]
        print(" | ".join(f"{n:<{wd}}" if i < 2 else f"{n:>{wd}}" for i, (n, wd) in enumerate(cols)))
        labels = list(dict.fromkeys([r["label"] for r in knees] + ([mem_label] if mems else [])))
        for label in labels:
            by_target = {r["target"]: r for r in knees if r["label"] == label}
            targets = list(dict.fromkeys(list(by_target) + (list(mems) if label == mem_label else [])))

            def figures(tg):
                k, m = by_target.get(tg), mems.get(tg) if label == mem_label else None
                cpu = k["cpu_tx"] if k and k["cpu_tx"] is not None else math.nan
                f = dict(knee=k["knee"] if k else math.nan, probe=k["probe"] if k and k["probe"] is not None else math.nan,
                         cpu=cpu, call=cpu * k["tx"] if k else math.nan, above=bool(k and k.get("above")))
                f["rss"] = per_10k(m["rss_kib"], m["held"]) / 1024 if m else math.nan
                f["pss"] = per_10k(m["pss_kib"], m["held"]) / 1024 if m else math.nan
                f["redis"] = per_10k(m["redis_bytes"], m["held"]) / 2**20 if m else math.nan
                f["record"] = m["record_bytes"] if m and m["record_bytes"] is not None else math.nan
                return f

            for tg in targets:
                f = figures(tg)
                knee = "-" if math.isnan(f["knee"]) else f"{f['knee']}{'+' if f['above'] else ''}"
                cells = [f"{label:<20}", f"{tg:<{tw}}", f"{knee:>8}", f"{fmt(f['probe'], '.0f'):>7}",
                         f"{fmt(f['cpu'], '.0f'):>6}", f"{fmt(f['call'], '.0f'):>7}"]
                if mems:
                    cells += [f"{fmt(f['rss'], '.1f'):>7}", f"{fmt(f['pss'], '.1f'):>7}", f"{fmt(f['redis'], '.1f'):>7}",
                              f"{fmt(f['record'], '.0f'):>6}"]
                print(" | ".join(cells))
            kam = next((t for t in targets if t.split("@")[0] == "kamailio"), None)
            if kam is None:
                continue
            fk = figures(kam)
            for tg in targets:
                if tg == kam:
                    continue
                f = figures(tg)
                # RSS sums Kamailio's shared memory once per process: only
                # PSS compares.
                cells = [f"{label:<20}", f"{tg + ' / ' + kam:<{tw}}", f"{ratio(f['knee'], fk['knee']):>8}",
                         f"{ratio(f['probe'], fk['probe']):>7}", f"{ratio(f['cpu'], fk['cpu']):>6}", f"{'':>7}"]
                if mems:
                    cells += [f"{'':>7}", f"{ratio(f['pss'], fk['pss']):>7}", f"{'':>7}", f"{'':>6}"]
                print(" | ".join(cells).rstrip(" |"))
        for r in rows:
            if r["workload"] == w and r["kind"] == "note":
                print(f"{r['target']}: {r['text']}")


# ---------------------------------------------------------------- main


def cmd_note(path, workload, target, text):
    record(path, dict(kind="note", workload=workload, target=target, text=text))


def cmd_fanout(log, t0):
    import datetime
    with open(log) as f:
        text = f.read()
    last, n = None, 0
    for chunk in text.split("-----------------------------------------------")[1:]:
        stamp, _, msg = chunk.partition("\n")
        if "X-Fanout: answered" in msg and "message sent" in msg:
            n += 1
            ts = datetime.datetime.strptime(stamp.strip(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            last = ts if last is None or ts > last else last
    print(f"{(last - t0) * 1000:.0f} ms for {n}/1000" if last else "none of 1000 answered")


def common(p):
    p.add_argument("--workload", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--servers", required=True, help="pids, comma separated")
    p.add_argument("--redis-port", type=int, default=0)
    p.add_argument("--scenario", required=True)
    p.add_argument("--results", default="")
    p.add_argument("--work", default=None)


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    argv = sys.argv[1:]
    sipp_args = []
    if "--" in argv:
        i = argv.index("--")
        argv, sipp_args = argv[:i], argv[i + 1:]
    if not argv:
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "cpu":
        print(cpu_ticks(rest))
    elif cmd == "mem":
        print(*memory_kib(rest))
    elif cmd == "counts":
        runs = [stat_figures(read_stat(p)) for p in rest]
        print(sum(r["ok"] for r in runs), sum(r["failed"] for r in runs), sum(r["retrans"] for r in runs),
              round(max((r["elapsed"] for r in runs), default=0.0), 3))
    elif cmd == "sockbuf":
        print(*sockbuf(rest[0]))
    elif cmd == "note":
        cmd_note(*rest[:4])
    elif cmd == "fanout":
        cmd_fanout(rest[0], float(rest[1]))
    elif cmd == "report":
        cmd_report(rest[0], rest[1] if len(rest) > 1 else None)
    elif cmd == "sweep":
        p = argparse.ArgumentParser(prog="sipbench.py sweep")
        common(p)
        p.add_argument("--tx", type=int, required=True, help="SIP transactions per SIPp call")
        p.add_argument("--secs", type=float, default=2)
        p.add_argument("--runs", type=int, default=3)
        p.add_argument("--fractions", default="0.4 0.6 0.8 0.9 1.0 1.1 1.25")
        p.add_argument("--rates", default="", help="fixed rates instead of the probe's fractions")
        p.add_argument("--probe-secs", type=float, default=3)
        p.add_argument("--probe-calls", type=int, default=100)
        p.add_argument("--tail", type=float, default=2, help="seconds a step may run past its last call")
        p.add_argument("--gap", type=float, default=0.2, help="seconds between runs")
        p.add_argument("--watch", type=int, default=0, help="a pid the runs need (the SIPp callee)")
        cmd_sweep(p.parse_args(rest), sipp_args)
    elif cmd == "hold":
        p = argparse.ArgumentParser(prog="sipbench.py hold")
        common(p)
        p.add_argument("--item", required=True)
        p.add_argument("--held", type=int, default=10000)
        p.add_argument("--rate", type=int, default=1000)
        p.add_argument("--settle", type=float, default=8)
        p.add_argument("--pause", action="store_true", help="calls: held in the caller's pause")
        p.add_argument("--record", default="", help="Redis key pattern of one held item's record")
        p.add_argument("--warm", default="", help="a scenario that holds nothing, run before the baseline")
        p.add_argument("--warm-calls", type=int, default=0, help="default: held / 50, at least 100")
        cmd_hold(p.parse_args(rest), sipp_args)
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
