#!/usr/bin/env bash
# What an external session supplement adds to call setup: INVITE -> 180 as
# the caller sees it (from SIPp's message trace, microsecond timestamps of
# every call's INVITE sent and 180 received), median and p99, through sipbus all-in-one (release build) without and then with
# the Python example supplement (examples/python/screening.py) registered
# through the registry. One SIPp run of each, at a steady open-loop rate;
# the callee is SIPp (tests/scenarios/call_uas.xml), registered once. Each
# run also gives the servers' CPU per call (user + system from /proc: sipbus,
# and the Python process when it runs).
#
#   bench/extension_latency.sh [rate] [seconds]     # default 20 calls/s for 30 s
# NO_BUILD=1 uses the target/release/sipbus already built.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
rate="${1:-20}"
secs="${2:-30}"
calls=$((rate * secs))
for cmd in sipp python3 ss; do
    command -v "$cmd" >/dev/null || { echo "$cmd missing (apt-get install sip-tester)" >&2; exit 2; }
done
[ -n "${NO_BUILD:-}" ] || cargo build --release -p sipbus >&2
examples/python/setup.sh >/dev/null
bin=target/release/sipbus

scratch

cat >"$work/sipbus.toml" <<'TOML'
[registrar]
domains = ["example.com"]
[[registrar.users]]
user = "bob"
password = "secret"
[registrar.auth]
algorithms = ["MD5", "SHA-256"]
[session]
authenticate = false
TOML
port=$(free_port)
grpc=$(free_port)
SIPBUS_EDGE__LISTEN="[\"udp:127.0.0.1:$port\"]" SIPBUS_GRPC__LISTEN="127.0.0.1:$grpc" SIPBUS_LOG__LEVEL=warn \
    "$bin" --config "$work/sipbus.toml" >"$work/sipbus.log" 2>&1 &
pids+=($!)
servers=($!)
clk_tck=$(getconf CLK_TCK)
wait_udp "$port"

uas_port=$(free_port)
printf 'SEQUENTIAL\nbob;example.com;3600;bench\n' >"$work/register.csv"
sipp "127.0.0.1:$port" -sf tests/scenarios/register_once.xml -inf "$work/register.csv" -au bob -ap secret \
    -auth_uri example.com -i 127.0.0.1 -p "$uas_port" -m 1 -timeout 15s -timeout_error -nostdin >/dev/null 2>&1
sipp -sf tests/scenarios/call_uas.xml -i 127.0.0.1 -p "$uas_port" -buff_size 4194304 -nostdin >/dev/null 2>&1 &
pids+=($!)
wait_udp "$uas_port"

# The caller scenario, its 180 required (every call timed).
sed -e 's|<recv response="180" optional="true" response_txn="invite" />|<recv response="180" response_txn="invite" />|' \
    tests/scenarios/call_uac.xml >"$work/uac_rtd.xml"
grep -q '<recv response="180" response_txn="invite" />' "$work/uac_rtd.xml" || { echo "call_uac.xml changed: no 180 to time" >&2; exit 1; }

# run NAME: one SIPp run; prints calls, failures, median, p99 and the
# servers' CPU per call.
run() {
    rm -f "$work/msgs.log" "$work/stat.csv"
    local ticks0 ticks1
    ticks0=$(cpu_ticks "${servers[@]}")
    (cd "$work" && timeout --signal=KILL $((secs * 3 + 60)) sipp "127.0.0.1:$port" -sf uac_rtd.xml -s bob -key domain example.com \
        -i 127.0.0.1 -p "$(free_port)" -buff_size 4194304 -d 0 -r "$rate" -m "$calls" -timeout $((secs * 3 + 30))s \
        -trace_msg -message_file msgs.log -trace_stat -stf stat.csv -nostdin >/dev/null 2>&1) || true
    ticks1=$(cpu_ticks "${servers[@]}")
    python3 - "$1" "$work" "$(((ticks1 - ticks0) * 1000000 / clk_tck))" <<'PY'
import csv, re, statistics, sys
from datetime import datetime
name, work, cpu_us = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = list(csv.reader(open(f"{work}/stat.csv"), delimiter=';'))
h, last = rows[0], [r for r in rows[1:] if r][-1]
ok, failed = last[h.index('SuccessfulCall(C)')], last[h.index('FailedCall(C)')]
# The message trace: a dashed line with the time, then the message.
sent, times = {}, []
text = "\n" + open(f"{work}/msgs.log", errors="replace").read()
for block in re.split(r"\n-{10,} ", text)[1:]:
    stamp, _, rest = block.partition("\n")
    try:
        t = datetime.strptime(stamp.strip()[:26], "%Y-%m-%d %H:%M:%S.%f").timestamp()
    except ValueError:
        continue
    m = re.search(r"^Call-ID:\s*(\S+)", rest, re.M | re.I)
    if not m:
        continue
    cid = m.group(1)
    if "message sent" in rest and re.search(r"^INVITE ", rest, re.M) and cid not in sent:
        sent[cid] = t
    elif "message received" in rest and re.search(r"^SIP/2.0 180 ", rest, re.M) and cid in sent:
        times.append((t - sent.pop(cid)) * 1000)
times.sort()
p99 = times[min(len(times) - 1, int(len(times) * 0.99))] if times else float('nan')
med = statistics.median(times) if times else float('nan')
print(f"{name:<28} calls {ok:>5} failed {failed:>3} samples {len(times):>5}  INVITE->180 median {med:7.3f} ms  p99 {p99:7.3f} ms  cpu_us/call {cpu_us // max(int(ok), 1)}")
PY
}

echo "sipbus all-in-one (release), $rate calls/s for $secs s, INVITE -> 180 at the caller"
run "without an extension"
SIPBUS_REGISTRY="http://127.0.0.1:$grpc" LEASE_SECONDS=30 \
    examples/python/run.sh screening.py --block-list /dev/null >"$work/screening.out" 2>"$work/screening.log" &
pids+=($!)
servers+=($!)
for _ in $(seq 100); do grep -q '^registered ' "$work/screening.out" && break; sleep 0.1; done
grep -q '^registered ' "$work/screening.out" || { echo "the Python supplement did not register:" >&2; cat "$work/screening.log" >&2; exit 1; }
sleep 2 # every replica rereads the registry within refresh_ms
run "with the Python supplement"
"$bin" extensions --point supplement --server "http://127.0.0.1:$grpc" | sed -n '/screening/p'
