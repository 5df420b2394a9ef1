#!/usr/bin/env bash
# Soak: MINUTES (default 30) of mixed load against sipbus split (Redis,
# REPLICAS of registrar-svc, sdp-svc, session-svc, pubsub-svc and
# publish-svc, one sip-edge) at half the knee, to see that memory stays
# flat once warm. Not run in CI. Four SIPp loads at once, each at FRACTION
# (1/8) of its split knee so that the four fractions sum to 0.5:
#   register   a fixed pool of REG_USERS users re-registering in turn
#              (bench/register_hold.xml with Expires REG_EXPIRES): the
#              bindings are refreshed long before they expire, the pool
#              stays REG_USERS bindings. 1 transaction per SIPp call.
#   calls      tests/scenarios/call_uac.xml to a SIPp callee
#              (call_uas.xml) registered through sipbus, as in
#              bench/calls.sh; each call lasts CALL_MS. 2 transactions.
#   subscribe  bench/soak_subscribe.xml, presence of sub0..sub999:
#              SUBSCRIBE, refresh after SUB_MS, unsubscribe after SUB_MS
#              more. 6 transactions (3 SUBSCRIBE, 3 NOTIFY).
#   publish    tests/scenarios/bench_publish.xml (Expires PUB_EXPIRES) on
#              pub0..pub999 (nobody watches them): initial, refresh after
#              PUB_MS, removal.
#              3 transactions.
# Subscriptions and publications ask for SUB_EXPIRES and PUB_EXPIRES (60 s,
# sipbus's minimum): what a call SIPp aborts leaves behind (a publication
# whose refresh got a 503) expires within a minute. With 600 s, an overload
# of a few seconds left up to max_publications (16) such orphans on every
# resource and each new PUBLISH was refused (403) for the next 10 minutes.
# The knees (SIPp calls/s of the bench scenarios, bench/register.sh,
# calls.sh, events.sh; split, one replica each) are KNEE_REGISTER 3340
# (register + unregister: 2 REGISTERs per call), KNEE_CALLS 489,
# KNEE_SUBSCRIBE 1468 (4 transactions per call) and KNEE_PUBLISH 2808. A
# soak scenario with a different number of transactions per call runs at
# the same share of the knee's transactions: REGISTER at FRACTION x 3340 x
# 2 = 835/s, subscriptions at FRACTION x 1468 x 4/6 = 122/s; calls 61/s,
# publications 351/s. REG_RATE, CALL_RATE, SUB_RATE, PUB_RATE override a
# rate (0 leaves that load out).
#
# Every SAMPLE_S (10) seconds, to a CSV: per server process (Redis, each
# replica, sip-edge) RSS and PSS (/proc/PID/smaps_rollup) and CPU (utime +
# stime: % of one core and µs per transaction over the interval), Redis
# used_memory and dbsize, each SIPp's successful, failed, retransmitted
# and current calls, the machine's busy CPU (the share other work took)
# and the kernel's UDP receive errors. At the end: the first warm sample
# (WARM_S, 120 s), the last one, the growth of total RSS, PSS and Redis
# used_memory from minute FROM_MIN (5) to the end (medians of a minute at
# each end; absolute and per minute), each process's slope, the failed
# calls per load (and the commonest unexpected answers), the spans with new
# failures (memory steps up in them: compare the slopes between them) and
# "memory flat: yes/no" (every growth < FLAT_PCT, 5 %). Every SIPp runs
# with -buff_size 4194304.
#
#   bench/soak.sh [minutes]                      # default 30 (SOAK_MIN)
#   SOAK_MIN=2 SIPBUS_BIN=/tmp/sipbus-soak bench/soak.sh
#   REPLICAS=2 CALL_RATE=100 REG_RATE=0 bench/soak.sh 60
# Settings (environment): SIPBUS_BIN (target/release/sipbus, copied at the
# start; not built here), REPLICAS (1: the topology the knees were
# measured on; deploy/run-split.sh runs 2), FRACTION (0.125), KNEE_*,
# *_RATE, REG_USERS (10000), REG_EXPIRES (120 s), CALL_MS (2000), SUB_MS
# (5000), PUB_MS (5000), SUB_EXPIRES and PUB_EXPIRES (60 s), SAMPLE_S,
# WARM_S, FROM_MIN, FLAT_PCT, OUT
# (bench/out: soak-DATE.csv, soak-DATE.txt (the summary), soak-DATE-logs/
# (servers' logs and SIPp's error logs, when not empty)).
# Servers run with the default timers (T1 500 ms: a transaction is kept
# 32 s after its answer) and allocator settings. SIPp shares the cores with
# sipbus; CPU figures are only as good as the machine is idle (the summary
# shows what else ran).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

minutes=${1:-${SOAK_MIN:-30}}
[[ "$minutes" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "usage: bench/soak.sh [minutes]" >&2; exit 2; }
secs=$(python3 -c "print(max(30, round(float('$minutes') * 60)))")
replicas=${REPLICAS:-1}
fraction=${FRACTION:-0.125}
reg_users=${REG_USERS:-10000}
reg_expires=${REG_EXPIRES:-120}
call_ms=${CALL_MS:-2000}
sub_ms=${SUB_MS:-5000}
pub_ms=${PUB_MS:-5000}
sub_expires=${SUB_EXPIRES:-60}
pub_expires=${PUB_EXPIRES:-60}
sample_s=${SAMPLE_S:-10}
bin=${SIPBUS_BIN:-target/release/sipbus}
bin_name=$bin
# sipbus reads every SIPBUS_* variable as configuration (BIN: unknown key).
unset SIPBUS_BIN
out=${OUT:-bench/out}
domain=example.com
sc=tests/scenarios
for t in sipp python3 ss redis-server redis-cli; do
    command -v "$t" >/dev/null || { echo "$t missing (apt-get install sip-tester redis-server)" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "no sipbus binary at $bin (SIPBUS_BIN; this script does not build)" >&2; exit 2; }

# Rates: FRACTION of each knee, in the knee scenario's transactions.
read -r def_reg def_call def_sub def_pub < <(python3 -c "
f = float('$fraction')
print(round(f * ${KNEE_REGISTER:-3340} * 2 / 1), round(f * ${KNEE_CALLS:-489} * 2 / 2),
      round(f * ${KNEE_SUBSCRIBE:-1468} * 4 / 6), round(f * ${KNEE_PUBLISH:-2808} * 3 / 3))")
reg_rate=${REG_RATE:-$def_reg}
call_rate=${CALL_RATE:-$def_call}
sub_rate=${SUB_RATE:-$def_sub}
pub_rate=${PUB_RATE:-$def_pub}
if [ "$reg_rate" -gt 0 ] && [ $((reg_users * 2)) -gt $((reg_rate * reg_expires)) ]; then
    echo "warning: $reg_users users at $reg_rate/s are refreshed every $((reg_users / reg_rate)) s," \
        "more than half their Expires ($reg_expires s): bindings may lapse" >&2
fi

raise_socket_buffers
CLK_TCK=$(getconf CLK_TCK)
export CLK_TCK
scratch
# Ctrl-C or a kill: the EXIT trap (lib.sh end_scratch) stops every process
# started here, by pid.
trap 'exit 130' INT
trap 'exit 143' TERM
stamp=$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
csv=$out/soak-$stamp.csv
summary=$out/soak-$stamp.txt
logdir=$out/soak-$stamp-logs
# shellcheck disable=SC2317 # run by lib.sh's end_scratch
on_exit() {
    local f g n=0
    mkdir -p "$logdir"
    for f in "$work"/*.log "$work"/*/err.log "$work"/*/stderr.log; do
        [ -s "$f" ] || continue
        n=$((n + 1))
        # The last MiB of each at most; SIPp's as LOAD-err.log.
        g=${f#"$work"/}
        tail -c 1048576 "$f" >"$logdir/${g//\//-}"
    done
    if [ "$n" -eq 0 ]; then rmdir "$logdir"; else echo "logs: $logdir"; fi
}
# A build finishing during the run changes nothing here.
cp "$bin" "$work/sipbus"
bin=$work/sipbus

# Users: the registering pool, the callee, the watched and the published
# resources. No authentication anywhere (as in the bench scripts); the
# callee's registration outlives the run.
callee_expires=$((secs + 3600))
python3 - "$work" "$reg_users" "$domain" "$callee_expires" <<'PY'
import sys
work, users, domain, callee_expires = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def inf(name, items):
    with open(f"{work}/{name}.csv", "w") as f:
        f.write("SEQUENTIAL\n" + "".join(f"{i}\n" for i in items))
inf("reg", [f"user{i}" for i in range(users)])
inf("sub", [f"sub{i}" for i in range(1000)])
inf("pub", [f"pub{i}" for i in range(1000)])
inf("callee", ["bob"])
names = [f"user{i}" for i in range(users)] + ["bob"] + [f"sub{i}" for i in range(1000)] + [f"pub{i}" for i in range(1000)]
with open(f"{work}/sipbus.toml", "w") as f:
    f.write(f'[registrar]\ndomains = ["{domain}"]\nmax_bindings = 16\nusers = [\n')
    f.write("".join(f'  {{ user = "{n}", password = "x" }},\n' for n in names))
    f.write("]\n[registrar.expires]\n")
    f.write(f"max_s = {max(7200, callee_expires)}\n")
    f.write('[registrar.auth]\nenabled = false\n')
    f.write('[session]\nauthenticate = false\n[pubsub]\nauthenticate = false\n[publish]\nauthenticate = false\n')
PY
config=$work/sipbus.toml
sed "s/^\( *Expires: \)3600\$/\1$reg_expires/" bench/register_hold.xml >"$work/register.xml"
sed "s/^\( *Expires: \)3600\$/\1$callee_expires/" bench/register_hold.xml >"$work/callee.xml"
sed "s/^\( *Expires: \)600\$/\1$pub_expires/" $sc/bench_publish.xml >"$work/publish.xml"
if ! grep -q "Expires: $reg_expires\$" "$work/register.xml" || ! grep -q "Expires: $callee_expires\$" "$work/callee.xml" ||
    [ "$(grep -c "Expires: $pub_expires\$" "$work/publish.xml")" != 2 ]; then
    echo "bench/register_hold.xml or $sc/bench_publish.xml: the Expires lines have changed" >&2
    exit 1
fi

# Servers: name and pid of each, in $work/procs.tsv.
: >"$work/procs.tsv"
server() { # NAME PID
    pids+=("$2")
    printf '%s\t%s\n' "$1" "$2" >>"$work/procs.tsv"
}
urls() { # PORT...: a TOML list of http://127.0.0.1:PORT
    local p s=""
    for p in "$@"; do s+="${s:+, }\"http://127.0.0.1:$p\""; done
    echo "[$s]"
}
start_split() {
    local svc i p
    local -A svc_ports
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >>"$work/redis.log" 2>&1 &
    server redis $!
    wait_port "$redis_port" || return 1
    local redis_url="SIPBUS_STORE__REDIS=redis://127.0.0.1:$redis_port/"
    for svc in registrar-svc sdp-svc session-svc pubsub-svc publish-svc; do
        svc_ports[$svc]=""
        for i in $(seq "$replicas"); do svc_ports[$svc]+=" $(free_port)"; done
    done
    eport=$(free_port)
    port=$(free_port)
    local edges="SIPBUS_BUS__EDGES={ edge1 = \"http://127.0.0.1:$eport\" }" reg sdp ses psb pub
    # shellcheck disable=SC2086 # the port lists split on purpose
    {
        reg="SIPBUS_BUS__REGISTRAR=$(urls ${svc_ports[registrar-svc]})"
        sdp="SIPBUS_BUS__SDP=$(urls ${svc_ports[sdp-svc]})"
        ses="SIPBUS_BUS__SESSION=$(urls ${svc_ports[session-svc]})"
        psb="SIPBUS_BUS__PUBSUB=$(urls ${svc_ports[pubsub-svc]})"
        pub="SIPBUS_BUS__PUBLISH=$(urls ${svc_ports[publish-svc]})"
    }
    for svc in registrar-svc sdp-svc publish-svc session-svc pubsub-svc; do
        local svc_env=("$redis_url")
        case "$svc" in
            session-svc) svc_env+=("$edges" "$reg" "$sdp") ;;
            pubsub-svc) svc_env+=("$edges" "$reg") ;;
        esac
        i=0
        for p in ${svc_ports[$svc]}; do
            i=$((i + 1))
            env "${svc_env[@]}" SIPBUS_GRPC__LISTEN="127.0.0.1:$p" SIPBUS_LOG__LEVEL=warn SIPBUS_SHUTDOWN__DRAIN_S=0 \
                "$bin" --config "$config" --target "$svc" >>"$work/$svc-$i.log" 2>&1 &
            server "$svc-$i" $!
            wait_port "$p" || return 1
        done
    done
    env "$reg" "$ses" "$psb" "$pub" SIPBUS_EDGE__LISTEN="[\"udp:127.0.0.1:$port\"]" SIPBUS_EDGE__INSTANCE=edge1 \
        SIPBUS_GRPC__LISTEN="127.0.0.1:$eport" SIPBUS_LOG__LEVEL=warn SIPBUS_SHUTDOWN__DRAIN_S=0 \
        "$bin" --config "$config" --target sip-edge >>"$work/sip-edge.log" 2>&1 &
    server sip-edge $!
    wait_udp "$port"
}

# SIPp: name, pid, stat file, transactions per call and rate of each, in
# $work/loads.tsv. sipp_run NAME RATE TX SIPP_ARG...: a load at RATE calls/s
# (RATE 0: the callee, which only answers) in $work/NAME.
: >"$work/loads.tsv"
sipp_run() {
    local name=$1 rate=$2 tx=$3 dir=$work/$1
    shift 3
    mkdir -p "$dir"
    (cd "$dir" && exec sipp -i 127.0.0.1 -t u1 -buff_size 4194304 -nostdin -timeout "$((secs + 600))s" \
        -trace_stat -stf "$dir/stat.csv" -fd 1 -trace_err -error_file "$dir/err.log" -ringbuffer_size 20000000 \
        -ringbuffer_files 1 "$@" \
        >/dev/null 2>"$dir/stderr.log") &
    pids+=("$!")
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$!" "$dir/stat.csv" "$tx" "$rate" >>"$work/loads.tsv"
}
# load NAME RATE TX HOLD_MS SIPP_ARG...: an open-loop load for the whole run
# (-m: calls enough for 2 minutes past the end, when it is stopped); at
# most 2 x the calls RATE keeps in flight (HOLD_MS each) + 1000 at once.
load() {
    local name=$1 rate=$2 tx=$3 hold=$4
    shift 4
    [ "$rate" -gt 0 ] || return 0
    sipp_run "$name" "$rate" "$tx" "127.0.0.1:$port" -p "$(free_port)" -r "$rate" -m $((rate * (secs + 120))) \
        -l $((rate * (hold / 1000 + 2) * 2 + 1000)) -recv_timeout 32000 "$@"
}

echo "soak: sipbus split ($replicas replica(s) of each service; binary $bin_name, copied)," \
    "$minutes min, sample every $sample_s s"
start_split || { echo "split did not start: $work/*.log" >&2; tail -n 5 "$work"/*.log >&2; exit 1; }
sleep 1
read -r rb tb < <(sipbench sockbuf "$port")
echo "udp 127.0.0.1:$port (socket buffers: receive $rb, send $tb), Redis :$redis_port"

if [ "$call_rate" -gt 0 ]; then
    uas_port=$(free_port)
    if ! timeout --signal=KILL 30 sipp "127.0.0.1:$port" -sf "$work/callee.xml" -inf "$work/callee.csv" -i 127.0.0.1 \
        -p "$uas_port" -t u1 -m 1 -buff_size 4194304 -timeout 15s -timeout_error -nostdin >/dev/null 2>&1; then
        echo "registration of the callee bob through 127.0.0.1:$port failed" >&2
        exit 1
    fi
    # The callee answers until it is stopped (-m: none).
    sipp_run callee 0 0 -sf "$PWD/$sc/call_uas.xml" -p "$uas_port" -l $((call_rate * (call_ms / 1000 + 2) * 4 + 1000))
    wait_udp "$uas_port"
fi
started=$(date +%s.%N)
load register "$reg_rate" 1 0 -sf "$work/register.xml" -inf "$work/reg.csv"
load calls "$call_rate" 2 "$call_ms" -sf "$PWD/$sc/call_uac.xml" -s bob -key domain "$domain" -d "$call_ms"
load subscribe "$sub_rate" 6 $((sub_ms * 2)) -sf "$PWD/bench/soak_subscribe.xml" -inf "$work/sub.csv" \
    -key domain "$domain" -key event presence -key sub_expires "$sub_expires" -d "$sub_ms"
load publish "$pub_rate" 3 "$pub_ms" -sf "$work/publish.xml" -inf "$work/pub.csv" -key domain "$domain" -d "$pub_ms"
cat <<EOF
loads: register $reg_rate REGISTER/s ($reg_users users, Expires $reg_expires s: each refreshed every $((reg_users / (reg_rate > 0 ? reg_rate : 1))) s),
  calls $call_rate/s (${call_ms} ms each: ~$((call_rate * call_ms / 1000)) up), subscribe $sub_rate/s (held ~$((sub_ms * 2)) ms:
  ~$((sub_rate * sub_ms * 2 / 1000)) held), publish $pub_rate/s (held ~$pub_ms ms: ~$((pub_rate * pub_ms / 1000)) held);
  subscriptions and publications ask for Expires $sub_expires s and $pub_expires s;
  FRACTION $fraction of the knees (REGISTER ${KNEE_REGISTER:-3340} x 2, calls ${KNEE_CALLS:-489}, subscribe ${KNEE_SUBSCRIBE:-1468} x 4/6,
  publish ${KNEE_PUBLISH:-2808}) unless set
csv: $csv
EOF

# The sampler: every SAMPLE_S to the CSV, a line a minute, the summary at
# the end (also on Ctrl-C: it is stopped with SIGTERM and summarizes what
# it has).
cat >"$work/soak.py" <<'PY'
import csv, math, os, re, signal, statistics, sys, time
sys.path.insert(0, os.path.join(os.getcwd(), "bench"))
from sipbench import CLK_TCK, memory_kib, cpu_ticks, redis, redis_used, udp_errors

(work, redis_port, secs, sample_s, started, csv_path, summary_path, warm_s, from_min, flat_pct, header) = sys.argv[1:12]
secs, sample_s, started = float(secs), float(sample_s), float(started)
warm_s, from_s, flat_pct = float(warm_s), float(from_min) * 60, float(flat_pct)
procs = [line.split("\t") for line in open(f"{work}/procs.tsv").read().splitlines()]
procs = [(n, int(p)) for n, p in procs]
loads = [line.split("\t") for line in open(f"{work}/loads.tsv").read().splitlines()]
loads = [dict(name=n, pid=int(p), stat=s, tx=int(t), rate=int(r)) for n, p, s, t, r in loads]
STAT = ["SuccessfulCall(C)", "FailedCall(C)", "Retransmissions(C)", "CurrentCall", "OutOfCallMsgs(C)", "DeadCallMsgs(C)"]
SHORT = ["ok", "failed", "retrans", "current", "outofcall", "dead"]
FAILS = ["FailedCannotSendMessage(C)", "FailedMaxUDPRetrans(C)", "FailedTcpConnect(C)", "FailedTcpClosed(C)",
         "FailedUnexpectedMessage(C)", "FailedCallRejected(C)", "FailedCmdNotSent(C)", "FailedRegexpDoesntMatch(C)",
         "FailedRegexpShouldntMatch(C)", "FailedRegexpHdrNotFound(C)", "FailedOutboundCongestion(C)",
         "FailedTimeoutOnRecv(C)", "FailedTimeoutOnSend(C)", "FailedTestDoesntMatch(C)", "FailedTestShouldntMatch(C)",
         "FailedStrcmpDoesntMatch(C)", "FailedStrcmpShouldntMatch(C)"]


class Stop(Exception):
    pass


def on_term(*_):
    raise Stop()


# Ctrl-C reaches the script, whose exit stops this with SIGTERM (a
# background process of a script ignores SIGINT).
signal.signal(signal.SIGTERM, on_term)


def last_stat(path):
    """The last complete row of a SIPp -trace_stat file, as a dict."""
    try:
        with open(path, "rb") as f:
            head = f.readline().decode(errors="replace").rstrip("\r\n").split(";")
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 65536))
            tail = f.read().decode(errors="replace").split("\n")
    except OSError:
        return {}
    for line in reversed(tail[:-1] if not tail[-1] else tail):
        row = line.rstrip("\r").split(";")
        if len(row) >= len(head) - 1 and row[0] != head[0]:
            return dict(zip(head, row))
    return {}


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def machine_ticks():
    """(busy, total) jiffies of every CPU (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v[:8]) - idle, sum(v[:8])


def num(x):
    try:
        return int(float(x))
    except (TypeError, ValueError):
        return 0


names = [n for n, _ in procs]
cols = ["time", "t_s"]
for n in names:
    cols += [f"{n}_rss_kib", f"{n}_pss_kib", f"{n}_cpu_pct", f"{n}_us_tx", f"{n}_ticks"]
cols += ["total_rss_kib", "total_pss_kib", "total_cpu_pct", "total_us_tx", "redis_used_memory", "redis_dbsize"]
for l in loads:
    cols += [f"{l['name']}_{s}" for s in SHORT] + [f"{l['name']}_per_s"]
cols += ["tx_per_s", "sipp_cpu_pct", "machine_busy_pct", "other_cpu_pct", "udp_rcvbuf_errors", "udp_in_errors", "loadavg1"]

rows, prev, notes = [], None, []
dead_loads, dead_servers = set(), set()
out = open(csv_path, "w", newline="")
w = csv.DictWriter(out, fieldnames=cols)
w.writeheader()


def sample():
    global prev
    now = time.time()
    r = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)), "t_s": round(now - started, 1)}
    ticks = {}
    tr = tp = 0
    for n, pid in procs:
        rss, pss = memory_kib([pid])
        ticks[n] = cpu_ticks([pid])
        r[f"{n}_rss_kib"], r[f"{n}_pss_kib"], r[f"{n}_ticks"] = rss, pss, ticks[n]
        tr, tp = tr + rss, tp + pss
    r["total_rss_kib"], r["total_pss_kib"] = tr, tp
    r["redis_used_memory"] = redis_used(redis_port)
    r["redis_dbsize"] = num(redis(redis_port, "dbsize"))
    tx = 0
    for l in loads:
        s = last_stat(l["stat"])
        for k, short in zip(STAT, SHORT):
            r[f"{l['name']}_{short}"] = num(s.get(k))
        l["last"] = s
        tx += r[f"{l['name']}_ok"] * l["tx"]
    sipp_ticks = cpu_ticks([l["pid"] for l in loads])
    busy, total = machine_ticks()
    rcv, inerr = udp_errors()
    state = dict(now=now, ticks=ticks, tx=tx, sipp=sipp_ticks, busy=busy, total=total, rcv=rcv, inerr=inerr,
                 ok={l["name"]: r[f"{l['name']}_ok"] for l in loads})
    r["loadavg1"] = os.getloadavg()[0]
    if prev:
        dt = now - prev["now"]
        dtx = tx - prev["tx"]
        alltk = 0
        for n in names:
            d = ticks[n] - prev["ticks"][n]
            alltk += d
            r[f"{n}_cpu_pct"] = round(100.0 * d / CLK_TCK / dt, 1)
            r[f"{n}_us_tx"] = round(d / CLK_TCK * 1e6 / dtx, 1) if dtx > 0 else ""
        r["total_cpu_pct"] = round(100.0 * alltk / CLK_TCK / dt, 1)
        r["total_us_tx"] = round(alltk / CLK_TCK * 1e6 / dtx, 1) if dtx > 0 else ""
        for l in loads:
            r[f"{l['name']}_per_s"] = round((state["ok"][l["name"]] - prev["ok"][l["name"]]) / dt, 1)
        r["tx_per_s"] = round(dtx / dt, 1)
        r["sipp_cpu_pct"] = round(100.0 * (sipp_ticks - prev["sipp"]) / CLK_TCK / dt, 1)
        dtotal = max(1, total - prev["total"])
        # Percent of one core, like the rest; the machine has os.cpu_count().
        r["machine_busy_pct"] = round(100.0 * os.cpu_count() * (busy - prev["busy"]) / dtotal, 1)
        r["other_cpu_pct"] = round(r["machine_busy_pct"] - r["total_cpu_pct"] - r["sipp_cpu_pct"], 1)
        r["udp_rcvbuf_errors"], r["udp_in_errors"] = rcv - prev["rcv"], inerr - prev["inerr"]
    prev = state
    w.writerow(r)
    out.flush()
    return r


def unexpected(d):
    """The commonest unexpected messages in SIPp's error log (-trace_err:
    err.log and the last 20 MB it rotated out): status lines, or methods of
    requests."""
    count = {}
    for name in os.listdir(d):
        if not (name.startswith("err.log") or "_errors_" in name):
            continue
        with open(os.path.join(d, name), errors="replace") as f:
            for line in f:
                m = re.search(r"unexpected message .*received '([^'\r\n]*)", line)
                if m:
                    msg = m.group(1).strip()
                    key = msg[8:] if msg.startswith("SIP/2.0 ") else msg.split(" ", 1)[0]
                    count[key] = count.get(key, 0) + 1
    return sorted(count.items(), key=lambda kv: -kv[1])[:4]


def mib(kib):
    return f"{kib / 1024:.1f}"


def progress(r):
    fails = " ".join(f"{l['name']} {r[l['name'] + '_failed']}" for l in loads if l["rate"])
    print(f"{r['t_s'] / 60:6.1f} min  RSS {mib(r['total_rss_kib'])} MiB  PSS {mib(r['total_pss_kib'])} MiB  Redis "
          f"{r['redis_used_memory'] / 2**20:.1f} MiB/{r['redis_dbsize']} keys  servers {r.get('total_cpu_pct', '-')} % "
          f"({r.get('total_us_tx', '-')} µs/tx)  other {r.get('other_cpu_pct', '-')} %  {r.get('tx_per_s', '-')} tx/s  "
          f"failed: {fails}", flush=True)


def window(rows, lo, hi):
    return [r for r in rows if lo <= r["t_s"] <= hi]


def median(rows, key):
    vals = [r[key] for r in rows if r.get(key) not in ("", None)]
    return statistics.median(vals) if vals else math.nan


def slope(rows, key):
    """Least-squares slope of key over t, per minute."""
    pts = [(r["t_s"] / 60, r[key]) for r in rows if r.get(key) not in ("", None)]
    if len(pts) < 3:
        return math.nan
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else math.nan


def disturbances(rows):
    """Spans of samples in which some load had new failed calls: "MIN-MIN
    (N failed, other CPU up to X %)". Memory tends to step up there (queues,
    retransmissions, transactions of the failed calls) while the rest runs
    steady; compare the slopes between them."""
    spans, cur, prev = [], None, None
    for r in rows:
        failed = sum(r[f"{l['name']}_failed"] for l in loads)
        other = r.get("other_cpu_pct")
        other = other if isinstance(other, (int, float)) else 0
        if prev is not None and failed > prev:
            if cur and r["t_s"] - cur[1] <= 2 * sample_s:
                cur[1], cur[2], cur[3] = r["t_s"], cur[2] + failed - prev, max(cur[3], other)
            else:
                cur = [r["t_s"] - sample_s, r["t_s"], failed - prev, other]
                spans.append(cur)
        prev = failed
    return [f"{a / 60:.1f}-{b / 60:.1f} min ({n} failed, other CPU up to {o:.0f} %)" for a, b, n, o in spans]


def report(interrupted):
    lines = []
    p = lines.append
    if not rows:
        p("no sample taken")
        return lines
    end = rows[-1]
    t_end = end["t_s"]
    # A run shorter than 2 x WARM_S: warm at half way.
    warm = next((r for r in rows if r["t_s"] >= min(warm_s, t_end / 2)), rows[-1])
    # Growth from minute FROM_MIN (earlier in a short run: half way), the
    # medians of a minute (shorter in a short run) at each end.
    f0 = from_s if t_end >= from_s + 120 else t_end / 2
    wlen = min(60.0, max(sample_s, (t_end - f0) / 3))
    a, b = window(rows, f0, f0 + wlen), window(rows, t_end - wlen, t_end)
    span = t_end - f0
    later = window(rows, f0, t_end)
    p("")
    p(header.strip())
    if interrupted:
        p(f"INTERRUPTED after {t_end / 60:.1f} min")
    p(f"{len(rows)} samples every {sample_s:g} s over {t_end / 60:.1f} min; CSV {csv_path}")
    p("CPU: the machine is shared (2 cores, builds): servers' % and µs/tx move with what else runs; "
      f"'other' (busy CPU not the servers' nor SIPp's, % of one core) averaged "
      f"{statistics.mean([r['other_cpu_pct'] for r in rows if r.get('other_cpu_pct') not in ('', None)] or [0]):.0f} %")
    p("")
    p(f"warm sample (t = {warm['t_s']:.0f} s) and last sample (t = {t_end:.0f} s); CPU: % of one core and µs per "
      f"transaction over the interval before each; growth from minute {f0 / 60:.1f} to the end (medians of "
      f"{wlen:.0f} s at each end), per minute, and the least-squares slope over the same span")
    hdr = (f"{'process':<16} {'RSS warm':>9} {'PSS warm':>9} {'CPU%':>5} {'µs/tx':>6} | {'RSS end':>9} {'PSS end':>9} "
           f"{'CPU%':>5} {'µs/tx':>6} | {'ΔRSS KiB':>9} {'/min':>7} {'slope':>7} | {'ΔPSS KiB':>9} {'/min':>7} {'slope':>7}")
    p(hdr)
    total_ok_tx = 0
    for n in names + ["total"]:
        rk, pk = f"{n}_rss_kib", f"{n}_pss_kib"
        dr = median(b, rk) - median(a, rk)
        dp = median(b, pk) - median(a, pk)
        p(f"{n:<16} {warm[rk]:>9} {warm[pk]:>9} {str(warm.get(f'{n}_cpu_pct', '')):>5} {str(warm.get(f'{n}_us_tx', '')):>6} | "
          f"{end[rk]:>9} {end[pk]:>9} {str(end.get(f'{n}_cpu_pct', '')):>5} {str(end.get(f'{n}_us_tx', '')):>6} | "
          f"{dr:>+9.0f} {dr / (span / 60):>+7.0f} {slope(later, rk):>+7.0f} | {dp:>+9.0f} {dp / (span / 60):>+7.0f} "
          f"{slope(later, pk):>+7.0f}")
    # CPU over the whole warm part.
    ticks = sum(end[f"{n}_ticks"] - warm[f"{n}_ticks"] for n in names)
    dtx = sum((end[f"{l['name']}_ok"] - warm[f"{l['name']}_ok"]) * l["tx"] for l in loads)
    dt = t_end - warm["t_s"]
    if dt > 0:
        per = "  ".join(f"{n} {100.0 * (end[f'{n}_ticks'] - warm[f'{n}_ticks']) / CLK_TCK / dt:.0f} %" for n in names)
        p(f"CPU from the warm sample to the end: {100.0 * ticks / CLK_TCK / dt:.0f} % of one core "
          f"({ticks / CLK_TCK * 1e6 / dtx if dtx else math.nan:.0f} µs per transaction, {dtx / dt:.0f} tx/s): {per}")
    ru = "redis_used_memory"
    du = median(b, ru) - median(a, ru)
    p(f"Redis used_memory: warm {warm[ru] / 2**20:.2f} MiB, end {end[ru] / 2**20:.2f} MiB, growth {du / 2**20:+.2f} MiB "
      f"({du / 1024 / (span / 60):+.0f} KiB/min); dbsize warm {warm['redis_dbsize']}, from {median(a, 'redis_dbsize'):.0f}, "
      f"end {end['redis_dbsize']}")
    p("")
    p(f"{'load':<10} {'rate/s':>7} {'achieved':>8} {'ok':>9} {'failed':>7} {'retrans':>8} {'current':>7} {'outofcall':>9} "
      f"{'dead':>5}  failure reasons")
    for l in loads:
        n = l["name"]
        ach = (end[f"{n}_ok"] - warm[f"{n}_ok"]) / dt if dt > 0 else math.nan
        s = l.get("last") or {}
        why = ", ".join(f"{k[6:-3]} {s[k]}" for k in FAILS if num(s.get(k)))
        got = unexpected(os.path.dirname(l["stat"]))
        if got:
            why += "; unexpected: " + ", ".join(f"{k} x{c}" for k, c in got)
        state = "" if n not in dead_loads else " (ENDED EARLY)"
        p(f"{n:<10} {l['rate'] or '-':>7} {ach:>8.1f} {end[f'{n}_ok']:>9} {end[f'{n}_failed']:>7} {end[f'{n}_retrans']:>8} "
          f"{end[f'{n}_current']:>7} {end[f'{n}_outofcall']:>9} {end[f'{n}_dead']:>5}  {why}{state}")
    for note in notes:
        p(note)
    spans = disturbances(rows)
    if spans:
        p(f"new failures in: {'; '.join(spans[:12])}{' ...' if len(spans) > 12 else ''}")
    p("")
    g = {}
    for key, label in (("total_rss_kib", "RSS"), ("total_pss_kib", "PSS"), (ru, "Redis used_memory")):
        m0 = median(a, key)
        g[label] = 100.0 * (median(b, key) - m0) / m0 if m0 else math.nan
    parts = ", ".join(f"{k} {v:+.2f} %" for k, v in g.items())
    flat = all(not math.isnan(v) and v < flat_pct for v in g.values())
    grow = max(names, key=lambda n: slope(later, f"{n}_pss_kib"))
    p(f"total growth from minute {f0 / 60:.1f} to {t_end / 60:.1f}: RSS {(median(b, 'total_rss_kib') - median(a, 'total_rss_kib')) / 1024:+.1f} MiB, "
      f"PSS {(median(b, 'total_pss_kib') - median(a, 'total_pss_kib')) / 1024:+.1f} MiB, Redis used_memory {du / 2**20:+.2f} MiB; "
      f"steepest PSS slope: {grow} {slope(later, f'{grow}_pss_kib'):+.0f} KiB/min")
    short = " (a run this short says little)" if t_end < from_s + 120 else ""
    if len(later) < 3:
        p(f"memory flat: unknown ({len(later)} samples from minute {f0 / 60:.1f})")
        return lines
    p(f"memory flat: {'yes' if flat else 'no'} (growth < {flat_pct:g} % from minute {f0 / 60:.1f} to the end: {parts}){short}")
    return lines


interrupted = False
try:
    print(header.strip(), flush=True)
    n = 0
    while True:
        due = started + (n + 1) * sample_s
        time.sleep(max(0.0, due - time.time()))
        n += 1
        # A server gone: the run is over (its sample would read nothing).
        for nm, pid in procs:
            if not alive(pid):
                dead_servers.add(nm)
                notes.append(f"SERVER {nm} (pid {pid}) ENDED before {time.time() - started:.0f} s")
                print(notes[-1], flush=True)
        if dead_servers:
            break
        r = sample()
        rows.append(r)
        if n % max(1, round(60 / sample_s)) == 0 or n == 1:
            progress(r)
        for l in loads:
            if l["name"] not in dead_loads and not alive(l["pid"]):
                dead_loads.add(l["name"])
                notes.append(f"SIPp {l['name']} ENDED EARLY at {r['t_s']:.0f} s")
                print(notes[-1], flush=True)
        if r["t_s"] >= secs - 0.5:
            break
except Stop:
    interrupted = True
signal.signal(signal.SIGTERM, signal.SIG_IGN)
out.close()
text = "\n".join(report(interrupted))
print(text, flush=True)
with open(summary_path, "w") as f:
    f.write(text + "\n")
sys.exit(1 if dead_servers or interrupted else 0)
PY
header="soak: sipbus split, $replicas replica(s) per service, $minutes min; rates/s: register $reg_rate, calls $call_rate, subscribe $sub_rate, publish $pub_rate (FRACTION $fraction of the knees); binary $bin_name; $(date '+%F %T')"
python3 "$work/soak.py" "$work" "$redis_port" "$secs" "$sample_s" "$started" "$csv" "$summary" "${WARM_S:-120}" \
    "${FROM_MIN:-5}" "${FLAT_PCT:-5}" "$header" &
sampler=$!
pids=("$sampler" "${pids[@]}")
status=0
wait "$sampler" || status=$?
forget "$sampler"
echo "summary: $summary"
exit "$status"
