#!/usr/bin/env bash
# Fuzzes what sipbus parses from the network, for a bounded time per
# target, with libFuzzer and stable Rust (no cargo-fuzz, no nightly):
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# 60 seconds per target by default (CI); a longer run is the same with a
# bigger number (scripts/fuzz.sh 3600). Targets: parse framer sdp
# registrar pidf summary dialog_info (all by default); each is
# fuzz/fuzz_targets/<target>.rs running the check in fuzz/checks/.
#
# Builds the fuzz crate (its own workspace) with the sanitizer-coverage
# flags cargo-fuzz uses into fuzz/target, then runs each target from a
# working corpus, fuzz/corpus/<target> (not committed), topped up from the
# committed seeds in fuzz/seeds/<target>. Prints per target the runs, the
# coverage (libFuzzer's cov: and ft:), the corpus size and whether it
# crashed; crash inputs go to fuzz/artifacts/<target>/, libFuzzer's output
# to fuzz/target/logs/<target>.log. Exits non-zero if any target crashed,
# naming the inputs and how to keep them as regression cases.
#
# Environment:
#   FUZZ_JOBS=N             targets run N at a time (default 1); each
#                           target still gets its seconds on one core
#   FUZZ_SANITIZER=address  AddressSanitizer too (RUSTC_BOOTSTRAP=1 for
#                           -Zsanitizer; slower; the code under test
#                           forbids unsafe, so it checks dependencies)
#   FUZZ_ARGS="..."         more libFuzzer flags (-max_len=, -dict=, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz=$PWD/fuzz

all=(parse framer sdp registrar pidf summary dialog_info)
# Whose tests/fuzz_regressions.rs replays each target's inputs.
declare -A crate=(
    [parse]=sip-message [framer]=sip-message [sdp]=sdp [registrar]=registrar-svc
    [pidf]=publish-svc [summary]=publish-svc [dialog_info]=pubsub-svc
)

seconds=60
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
fi
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=("${all[@]}")
fi
for t in "${targets[@]}"; do
    if [[ -z ${crate[$t]:-} ]]; then
        echo "fuzz.sh: unknown target '$t' (targets: ${all[*]})" >&2
        exit 2
    fi
done

# What `cargo fuzz build` passes (cargo-fuzz src/project.rs), without its
# default AddressSanitizer and with debug assertions and overflow checks;
# one codegen unit is in fuzz/Cargo.toml's release profile. `--target`
# keeps these flags off build scripts and proc macros.
rustflags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    -Cllvm-args=-sanitizer-coverage-stack-depth
    -Cllvm-args=-simplifycfg-branch-fold-threshold=0
    --cfg fuzzing
    -Cdebug-assertions
    -Coverflow-checks
)
target_dir=$fuzz/target
case ${FUZZ_SANITIZER:-} in
    "") ;;
    address)
        rustflags+=(-Zsanitizer=address)
        export RUSTC_BOOTSTRAP=1 ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0
        target_dir=$fuzz/target/asan
        ;;
    *)
        echo "fuzz.sh: FUZZ_SANITIZER is 'address' or unset" >&2
        exit 2
        ;;
esac
triple=$(rustc -vV | sed -n 's/^host: //p')
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done

began=$SECONDS
RUSTFLAGS="${rustflags[*]} ${RUSTFLAGS:-}" cargo build --manifest-path "$fuzz/Cargo.toml" \
    --release --target "$triple" --target-dir "$target_dir" "${bins[@]}"
echo "built in $((SECONDS - began)) s"

logs=$fuzz/target/logs
mkdir -p "$logs"
# Crash inputs of this run: those newer than this file.
stamp=$logs/.started
touch "$stamp"

# Runs one target; its summary line goes to $logs/<target>.summary.
run() {
    local t=$1 corpus=$fuzz/corpus/$1 artifacts=$fuzz/artifacts/$1
    local log=$logs/$t.log rc=0
    mkdir -p "$corpus" "$artifacts"
    cp -n "$fuzz/seeds/$t"/* "$corpus"/ 2>/dev/null || true
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    "$target_dir/$triple/release/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" ${FUZZ_ARGS:-} "$corpus" >"$log" 2>&1 || rc=$?
    local runs status cov ft files kb verdict
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1) || true
    # libFuzzer's last status line: "#<runs> <event> cov: N ft: N corp: ..."
    status=$(grep -E '^#[0-9]+[[:space:]].* cov: ' "$log" | tail -n 1) || true
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")
    files=$(find "$corpus" -type f | wc -l)
    kb=$(find "$corpus" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", (s + 1023) / 1024 }')
    if [[ $rc -eq 0 ]]; then verdict=ok; else verdict="CRASHED (exit $rc)"; fi
    printf '%-12s runs %10s  cov %6s  ft %7s  corpus %5s files %6s KB  %s\n' \
        "$t" "${runs:-?}" "${cov:-?}" "${ft:-?}" "$files" "$kb" "$verdict" >"$logs/$t.summary"
    echo "$rc" >"$logs/$t.rc"
}

jobs=${FUZZ_JOBS:-1}
for t in "${targets[@]}"; do
    rm -f "$logs/$t.rc" "$logs/$t.summary"
    while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n || true; done
    run "$t" &
done
wait
failed=()
for t in "${targets[@]}"; do
    [[ $(cat "$logs/$t.rc" 2>/dev/null) == 0 ]] || failed+=("$t")
done

echo
echo "fuzzed ${#targets[@]} target(s) for ${seconds} s each (total $((SECONDS - began)) s with the build):"
for t in "${targets[@]}"; do
    cat "$logs/$t.summary" 2>/dev/null || echo "$t: did not run to the end (see $logs/$t.log)"
done
if [[ ${#failed[@]} -eq 0 ]]; then
    exit 0
fi

echo
for t in "${failed[@]}"; do
    echo "== $t crashed ($logs/$t.log):"
    # The panic and the frames in sipbus's code, else libFuzzer's report.
    if grep -q 'panicked at' "$logs/$t.log"; then
        sed -n '/panicked at/,/^stack backtrace:/p' "$logs/$t.log" | cut -c1-2000 | head -n 30
        grep -E "at $PWD/[^ ]*\.rs:" "$logs/$t.log" | grep -v '/fuzz/fuzz_targets/' | head -n 12
    else
        grep -v '^#[0-9]' "$logs/$t.log" | tail -n 30
    fi
    mapfile -t found < <(find "$fuzz/artifacts/$t" -type f -newer "$stamp" | sort)
    echo
    echo "inputs:"
    printf '  %s\n' "${found[@]:-none written (see the log)}"
    echo "reproduce:  $target_dir/$triple/release/$t <input>"
    echo "keep as a regression case (replayed by 'cargo test -p ${crate[$t]} --test fuzz_regressions'):"
    echo "  mkdir -p fuzz/regressions/$t && cp <input> fuzz/regressions/$t/<what-it-shows>"
    echo
done
exit 1
