#!/usr/bin/env bash
# REGISTER/s over UDP, TLS and WSS against one sipbus all-in-one (release
# build, registrar authentication off so the transports are what differs)
# and against Kamailio (bench/kamailio/transports.cfg: the same registrar
# without authentication, with its tls and websocket modules) in the same
# run, with the project's own closed-loop client (tests/src/bin/sipload.rs:
# CONNS connections or sockets, WINDOW requests in flight on each; one
# AOR per connection, so pipelined REGISTERs of one AOR would measure the
# registrar's compare-and-set contention rather than the transport). Each
# target and transport runs RUNS times, interleaved; the table shows
# medians over the runs that lost no connection of the rate and of each
# server's CPU microseconds per REGISTER
# (from /proc, every process of the server), the ratios to UDP and to
# Kamailio, and connections that stalled or dropped (Kamailio 5.6's tls
# module with OpenSSL 3 loses some at 32 connections here: 16 by default).
# SIPp is not used: Debian's SIPp has no TLS.
#
#   bench/transports.sh     # SECONDS_EACH=8 CONNS=16 WINDOW=1 RUNS=3; SKIP_BUILD=1
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SECONDS_EACH=${SECONDS_EACH:-8}
CONNS=${CONNS:-16}
WINDOW=${WINDOW:-1}
RUNS=${RUNS:-3}

for cmd in kamailio openssl python3 ss; do
    command -v "$cmd" >/dev/null || {
        echo "$cmd missing (apt-get install kamailio kamailio-tls-modules kamailio-websocket-modules openssl)" >&2
        exit 2
    }
done
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -q -p sipbus --bin sipbus
    cargo build --release -q -p sipbus-tests --bin sipload
fi
scratch

# A CA and a certificate for 127.0.0.1, for both servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=bench CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=sipbus \
    -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$work/ext"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -set_serial 1 -days 2 \
    -extfile "$work/ext" -out "$work/tls.pem" 2>/dev/null

udp=$(free_port); tls=$(free_port); wss=$(free_port)
users=$(python3 -c "print('[' + ', '.join('{user = \"load%d\", password = \"x\"}' % i for i in range($CONNS)) + ']')")
SIPBUS_EDGE__LISTEN="[\"udp:127.0.0.1:$udp\", \"tls:127.0.0.1:$tls\", \"wss:127.0.0.1:$wss\"]" \
SIPBUS_EDGE__TLS__CERT_FILE="$work/tls.pem" SIPBUS_EDGE__TLS__KEY_FILE="$work/tls.key" \
SIPBUS_REGISTRAR__DOMAINS='["example.com"]' SIPBUS_REGISTRAR__USERS="$users" \
SIPBUS_REGISTRAR__AUTH__ENABLED=false SIPBUS_GRPC__LISTEN="127.0.0.1:$(free_port)" SIPBUS_LOG__LEVEL=warn \
    target/release/sipbus --target all >"$work/sipbus.log" 2>&1 &
sipbus=$!
pids+=("$sipbus")
wait_udp "$udp" || { cat "$work/sipbus.log"; exit 1; }

kudp=$(free_port); ktls=$(free_port); kwss=$(free_port)
sed "s|CERT_FILE|$work/tls.pem|; s|KEY_FILE|$work/tls.key|" bench/kamailio/transports.cfg >"$work/kamailio.cfg"
kamailio -f "$work/kamailio.cfg" -l "udp:127.0.0.1:$kudp" -l "tls:127.0.0.1:$ktls" -l "tls:127.0.0.1:$kwss" \
    -DD -E -m 512 -M 16 -P "$work/kamailio.pid" >"$work/kamailio.log" 2>&1 &
kamailio=$!
pids+=("$kamailio")
wait_udp "$kudp" || { cat "$work/kamailio.log"; exit 1; }

declare -A port=([sipbus-udp]=$udp [sipbus-tls]=$tls [sipbus-wss]=$wss
                 [kamailio-udp]=$kudp [kamailio-tls]=$ktls [kamailio-wss]=$kwss)
declare -A server=([sipbus]=$sipbus [kamailio]=$kamailio)
for run in $(seq "$RUNS"); do
    for target in sipbus kamailio; do
        for t in udp tls wss; do
            before=$(cpu_ticks "${server[$target]}")
            line=$(target/release/sipload --transport "$t" --target "127.0.0.1:${port[$target-$t]}" \
                --ca "$work/ca.pem" --conns "$CONNS" --window "$WINDOW" --seconds "$SECONDS_EACH")
            after=$(cpu_ticks "${server[$target]}")
            echo "target=$target $line cpu_ticks=$((after - before))" | tee -a "$work/results"
        done
    done
done

python3 - "$work/results" <<'TABLE'
import statistics, sys
tick_us = 1e6 / 100  # /proc counts clock ticks of 10 ms
rows, lost = {}, {}
for line in open(sys.argv[1]):
    f = dict(kv.split('=') for kv in line.split())
    n = int(f['registers_ok'])
    cpu = int(f['cpu_ticks']) * tick_us / n if n else float('nan')
    key = (f['target'], f['transport'])
    rows.setdefault(key, [])
    lost[key] = lost.get(key, 0) + int(f['lost_connections'])
    # A run that lost connections (a server crashed or stalled) says
    # nothing about cost: it is counted, not measured.
    if int(f['lost_connections']) == 0:
        rows[key].append((float(f['per_second']), cpu))
def ratio(a, b):
    return a / b if b else float('nan')
nan = float('nan')
med = {k: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v)) if v else (nan, nan)
       for k, v in rows.items()}
print(f"\n{'target':<10}{'transport':<10}{'REGISTER/s':>11}{'vs UDP':>8}{'cpu us/REG':>12}{'vs UDP':>8}"
      f"{'rate vs kam':>13}{'cpu vs kam':>12}{'clean runs':>11}{'lost conns':>11}")
for target in ('sipbus', 'kamailio'):
    for t in ('udp', 'tls', 'wss'):
        r, c = med[(target, t)]
        ru, cu = med[(target, 'udp')]
        rk, ck = med[('kamailio', t)]
        print(f"{target:<10}{t:<10}{r:>11.0f}{ratio(r, ru):>8.2f}{c:>12.1f}{ratio(c, cu):>8.2f}"
              f"{ratio(r, rk):>13.2f}{ratio(c, ck):>12.2f}"
              f"{len(rows[(target, t)]):>11}{lost[(target, t)]:>11}")
TABLE
