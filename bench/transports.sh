#!/usr/bin/env bash
# REGISTER/s over UDP, TLS and WSS against one sipbus all-in-one (release
# build, registrar authentication off so the transports are what differs),
# with the project's own closed-loop client (tests/src/bin/sipload.rs:
# CONNS connections or sockets, WINDOW requests in flight on each; one
# AOR per connection, so pipelined REGISTERs of one AOR would measure the
# registrar's compare-and-set contention rather than the transport). Each
# transport runs RUNS times, interleaved; the table shows medians of the
# rate and of sipbus's CPU microseconds per REGISTER (from /proc), and the
# ratios to UDP. SIPp is not used: Debian's SIPp has no TLS.
#
#   bench/transports.sh     # SECONDS_EACH=8 CONNS=32 WINDOW=1 RUNS=3; SKIP_BUILD=1
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SECONDS_EACH=${SECONDS_EACH:-8}
CONNS=${CONNS:-32}
WINDOW=${WINDOW:-1}
RUNS=${RUNS:-3}

if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -q -p sipbus --bin sipbus
    cargo build --release -q -p sipbus-tests --bin sipload
fi
scratch

# A CA and a certificate for 127.0.0.1.
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
pid=$!
pids+=("$pid")
wait_udp "$udp" || { cat "$work/sipbus.log"; exit 1; }

declare -A port=([udp]=$udp [tls]=$tls [wss]=$wss)
for run in $(seq "$RUNS"); do
    for t in udp tls wss; do
        target/release/sipload --transport "$t" --target "127.0.0.1:${port[$t]}" --ca "$work/ca.pem" \
            --conns "$CONNS" --window "$WINDOW" --seconds "$SECONDS_EACH" --pid "$pid" | tee -a "$work/results"
    done
done

python3 - "$work/results" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = dict(kv.split('=') for kv in line.split())
    rows.setdefault(f['transport'], []).append((float(f['per_second']), float(f.get('cpu_us_per_register', 'nan'))))
med = {t: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v)) for t, v in rows.items()}
print(f"\n{'transport':<10}{'REGISTER/s':>12}{'vs UDP':>8}{'cpu us/REG':>12}{'vs UDP':>8}   (medians of {len(rows['udp'])})")
for t in ('udp', 'tls', 'wss'):
    r, c = med[t]
    print(f"{t:<10}{r:>12.0f}{r / med['udp'][0]:>8.2f}{c:>12.1f}{c / med['udp'][1]:>8.2f}")
PY
