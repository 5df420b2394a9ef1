#!/usr/bin/env bash
# Runs sipbus split locally, as it runs on Kubernetes: Redis, one sip-edge
# and two registrar-svc replicas, each its own process, gRPC between them.
#
#   deploy/run-split.sh          start everything, wait; Ctrl-C stops it all
#   deploy/run-split.sh stop     stop what a previous run left (by pid)
#
# Ports (loopback): SIP 5060 (UDP+TCP), Redis 6390, registrar-svc 50061
# and 50062. Logs and pids go to deploy/local/run/.
set -euo pipefail
cd "$(dirname "$0")/.."
run=deploy/local/run
mkdir -p "$run"

stop() {
    for f in "$run"/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null && echo "stopped $(basename "$f" .pid) ($pid)"
        rm -f "$f"
    done
}

if [ "${1:-}" = "stop" ]; then
    stop
    exit 0
fi
command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install redis-server" >&2; exit 2; }
stop
trap 'stop; exit 0' INT TERM
trap stop EXIT

cargo build --release -p sipbus
bin=target/release/sipbus
config=deploy/local/split.toml

wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1; see $run/*.log" >&2; exit 1; }

redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly yes --dir "$run" >"$run/redis.log" 2>&1 &
echo $! >"$run/redis.pid"
wait_port 6390

for i in 1 2; do
    SIPBUS_STORE__REDIS=redis://127.0.0.1:6390/ SIPBUS_GRPC__LISTEN="127.0.0.1:5006$i" \
        "$bin" --config "$config" --target registrar-svc >"$run/registrar-$i.log" 2>&1 &
    echo $! >"$run/registrar-$i.pid"
    wait_port "5006$i"
done

SIPBUS_EDGE__LISTEN='["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]' SIPBUS_EDGE__INSTANCE=edge-1 \
    SIPBUS_BUS__REGISTRAR='["http://127.0.0.1:50061", "http://127.0.0.1:50062"]' \
    "$bin" --config "$config" --target sip-edge >"$run/edge.log" 2>&1 &
echo $! >"$run/edge.pid"
wait_port 5060

cat <<MSG
sipbus split is up: SIP on 127.0.0.1:5060, registrar-svc on :50061 and :50062, Redis on :6390.
Register a phone as alice@localhost (password alice-secret) or bob@localhost (bob-secret).
Kill a registrar (kill \$(cat $run/registrar-1.pid)) and registrations go on through the other.
Logs: $run/*.log. Ctrl-C stops everything.
MSG
wait
