#!/usr/bin/env bash
# Runs every SIPp call-flow pair of tests/scenarios through a server and
# reports pass/fail per pair: the callee registers once (register_once.xml,
# digest auth, sent from the port each callee scenario then listens on),
# then for each pair the callee SIPp starts, the caller SIPp places one
# call, and the pair passes when both exit 0 (every call successful).
#
#   bench/calls-check.sh              # starts Kamailio (bench/kamailio/proxy.cfg)
#   bench/calls-check.sh HOST:PORT    # an already running server (sipbus)
#
# The server must know user $CALLEE (bob) with password $PASSWORD (secret)
# in domain $DOMAIN (example.com), challenge REGISTER offering MD5 first
# (SIPp's digest is MD5 only; for sipbus: [registrar.auth] algorithms =
# ["MD5", "SHA-256"]) and route INVITEs for it to the registered contact.
# The caller is alice@$DOMAIN, unauthenticated. CALLS=N places N calls per pair (default 1). Failing
# pairs keep their SIPp logs (message traces, errors) and print where;
# KEEP=1 keeps them for every pair.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
server="${1:-}"
domain="${DOMAIN:-example.com}"
callee="${CALLEE:-bob}"
password="${PASSWORD:-secret}"
calls="${CALLS:-1}"
for cmd in sipp python3 ss; do
    command -v "$cmd" >/dev/null || { echo "$cmd missing (apt-get install sip-tester)" >&2; exit 2; }
done

scratch
keep="${KEEP:-0}"
# KEEP=1 keeps the logs.
on_exit() {
    if [ "$keep" -eq 0 ]; then return 0; fi
    echo "logs kept in $work" >&2
    return 1
}

if [ -z "$server" ]; then
    command -v kamailio >/dev/null || { echo "kamailio missing (apt-get install kamailio)" >&2; exit 2; }
    kport=$(free_port)
    kamailio -f bench/kamailio/proxy.cfg -l "udp:127.0.0.1:$kport" -DD -E -m 64 -M 8 >"$work/kamailio.log" 2>&1 &
    pids+=($!)
    wait_udp "$kport"
    server="127.0.0.1:$kport"
    echo "server: kamailio (bench/kamailio/proxy.cfg) on $server"
else
    echo "server: $server"
fi

sc=tests/scenarios
common=(-i 127.0.0.1 -t u1 -nostdin -trace_err -trace_msg)

# The callee's contact: one port, reused by every callee scenario.
uas_port=$(free_port)
printf 'SEQUENTIAL\n%s;%s;3600;check\n' "$callee" "$domain" >"$work/register.csv"
if ! timeout --signal=KILL 30 sipp "$server" -sf "$sc/register_once.xml" -inf "$work/register.csv" \
    -au "$callee" -ap "$password" -auth_uri "$domain" -p "$uas_port" -m 1 -timeout 15s -timeout_error \
    "${common[@]}" -error_file "$work/register.err" -message_file "$work/register.msg" \
    >"$work/register.out" 2>&1; then
    keep=1
    echo "FAIL register $callee@$domain from 127.0.0.1:$uas_port (see $work/register.*)"
    exit 1
fi
echo "registered $callee@$domain -> 127.0.0.1:$uas_port"

failed=0
# pair NAME UAC_SCENARIO UAS_SCENARIO|- "UAC_ARGS" "UAS_ARGS"
pair() {
    local name=$1 uac=$2 uas=$3 uac_args=$4 uas_args=$5 uas_pid="" uas_rc=0 uac_rc=0
    local uac_port
    uac_port=$(free_port)
    if [ "$uas" != - ]; then
        # shellcheck disable=SC2086
        timeout --signal=KILL 90 sipp -sf "$sc/$uas" -p "$uas_port" -m "$calls" -timeout 60s -timeout_error \
            $uas_args "${common[@]}" -error_file "$work/$name.uas.err" -message_file "$work/$name.uas.msg" \
            >"$work/$name.uas.out" 2>&1 &
        uas_pid=$!
        pids+=("$uas_pid")
        wait_udp "$uas_port"
    fi
    # shellcheck disable=SC2086
    timeout --signal=KILL 90 sipp "$server" -sf "$sc/$uac" -s "$callee" -key domain "$domain" -p "$uac_port" \
        -m "$calls" -r 10 -timeout 60s -timeout_error $uac_args "${common[@]}" \
        -error_file "$work/$name.uac.err" -message_file "$work/$name.uac.msg" \
        >"$work/$name.uac.out" 2>&1 || uac_rc=$?
    if [ -n "$uas_pid" ]; then
        # A failed caller leaves the callee waiting for its -timeout.
        if [ "$uac_rc" -ne 0 ]; then kill "$uas_pid" 2>/dev/null || true; uas_rc=stopped; fi
        local rc=0
        wait "$uas_pid" || rc=$?
        [ "$uas_rc" = stopped ] || uas_rc=$rc
        forget "$uas_pid"
    fi
    if [ "$uac_rc" = 0 ] && [ "$uas_rc" = 0 ]; then
        printf 'PASS %-12s %s / %s\n' "$name" "$uac" "$uas"
    else
        keep=1
        failed=$((failed + 1))
        printf 'FAIL %-12s %s / %s (uac exit %s, uas exit %s; logs %s/%s.*)\n' \
            "$name" "$uac" "$uas" "$uac_rc" "$uas_rc" "$work" "$name"
        # The first thing SIPp complained about, on one line.
        python3 - "$work/$name.uac.err" "$work/$name.uas.err" <<'PY' || true
import re, sys
for path in sys.argv[1:]:
    try:
        text = open(path, errors="replace").read()
    except OSError:
        continue
    m = re.search(r"\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: (.*?)(?:\r?\n|$)", text)
    if m:
        print(f"     {path.rsplit('/', 1)[-1]}: {m.group(1)[:200]}")
        break
PY
    fi
}

pair basic      call_uac.xml            call_uas.xml      "-d 500" ""
pair callee-bye call_uac_callee_bye.xml call_uas_bye.xml  ""       "-d 500"
pair busy       call_uac_busy.xml       uas_busy.xml      ""       ""
pair cancel     call_uac_cancel.xml     uas_noanswer.xml  "-d 500" ""
pair 488        call_uac_488.xml        -                 ""       ""
pair hold       call_uac_hold.xml       call_uas_hold.xml "-d 200" ""

echo
if [ "$failed" -eq 0 ]; then echo "all pairs pass through $server"; else echo "$failed pair(s) failed through $server"; exit 1; fi
