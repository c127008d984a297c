#!/usr/bin/env bash
# Benchmarks of mmpool against the usual alternatives (not part of the tests):
#   1. `mmpool-bench` (the workspace's bench/ crate) from a release build: one
#      table, figures in target/bench.json;
#   2. instructions per uncontended acquire+release under callgrind, if valgrind
#      is installed (stable on noisy machines, unlike nanoseconds);
#   3. the Python rows (python/bench/bench_with.py), if the package imports;
#   4. fragmentation of placed pools: one line of the demo's requests placed
#      by mmpool's allocator, first fit, offset-allocator and rlsf (simulated
#      time, so the same figures on every machine).
#
#   scripts/bench.sh [--quick]        # --quick: short runs, for a smoke check
#
# Release builds go to target/bench (override with CARGO_TARGET_DIR) so that
# they do not disturb the debug build in target/debug.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=""
case "${1:-}" in
    "") ;;
    --quick) QUICK=--quick ;;
    *) echo "usage: scripts/bench.sh [--quick]" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench}
JSON=${BENCH_JSON:-target/bench.json}

section() { printf '\n==== %s ====\n' "$*"; }

section "build (release)"
cargo build --release --lib
cargo build --release -p mmpool-bench
BIN=$CARGO_TARGET_DIR/release/mmpool-bench
LIB=$CARGO_TARGET_DIR/release/libmmpool.so

section "mmpool-bench"
"$BIN" $QUICK ${HOLD_US:+--hold-us "$HOLD_US"} --json "$JSON"

section "instructions per uncontended acquire+release (callgrind)"
if command -v valgrind >/dev/null; then
    PAIRS=100000
    [ -n "$QUICK" ] && PAIRS=10000
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # Instructions of a whole run of N pairs; two runs differ only by the pairs.
    instructions() {
        local out="$tmp/$1.$2.out"
        valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$BIN" --callgrind-pair "$1" --pairs "$2" >/dev/null 2>"$tmp/log"
        awk '/^(summary|totals):/ { print $2; exit }' "$out"
    }
    printf '%-16s %12s %10s\n' implementation "instr/pair" "x floor"
    floor=""
    for impl in floor mmpool ref-std ref-parking_lot tokio mmpool-shared; do
        base=$(instructions "$impl" 0)
        full=$(instructions "$impl" "$PAIRS")
        per=$(awk -v a="$base" -v b="$full" -v n="$PAIRS" 'BEGIN { printf "%.1f", (b - a) / n }')
        [ -z "$floor" ] && floor=$per
        printf '%-16s %12s %10s\n' "$impl" "$per" "$(awk -v p="$per" -v f="$floor" 'BEGIN { printf "%.2f", p / f }')"
    done
    echo "(valgrind --tool=callgrind; (Ir of $PAIRS pairs - Ir of 0 pairs) / $PAIRS, same binary;"
    echo " mmpool-shared: a pool shared between processes, through the same C functions)"

    section "instructions per hand-off: a release granting a sleeping waiter, and its wake-up (callgrind)"
    ROUNDS=1000
    [ -n "$QUICK" ] && ROUNDS=200
    handoff() {
        local out="$tmp/h.$1.$2.out"
        valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$BIN" --callgrind-handoff "$1" --rounds "$2" >/dev/null 2>"$tmp/log"
        awk '/^(summary|totals):/ { print $2; exit }' "$out"
    }
    printf '%-16s %14s\n' implementation "instr/hand-off"
    for impl in mmpool ref-std ref-parking_lot tokio; do
        base=$(handoff "$impl" 0)
        full=$(handoff "$impl" "$ROUNDS")
        printf '%-16s %14s\n' "$impl" "$(awk -v a="$base" -v b="$full" -v n="$ROUNDS" 'BEGIN { printf "%.0f", (b - a) / (2 * n) }')"
    done
    echo "(user-space instructions of one release that grants plus the waiter's acquire, both"
    echo " threads' harness included (a 200 us sleep per hand-off); (Ir of N rounds - Ir of 0) / 2N)"
else
    echo "valgrind is not installed: skipped (apt-get install valgrind)"
fi

section "Python: acquire+release through \`with\`"
if [ -f python/bench/bench_with.py ] &&
    PYTHONPATH=python MMPOOL_LIBRARY=$LIB python3 -c 'import mmpool' 2>/dev/null; then
    PYTHONPATH=python MMPOOL_LIBRARY=$LIB python3 python/bench/bench_with.py \
        ${QUICK:+--seconds 0.2}
else
    echo "skipped: python/bench/bench_with.py is missing or the mmpool package does not import"
fi

section "placement: fragmentation on the demo's size mix"
"$BIN" --fragmentation $QUICK
