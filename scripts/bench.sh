#!/usr/bin/env bash
# Benchmarks of mmpool against the usual alternatives (not part of the tests):
#   1. `mmpool-bench` (the workspace's bench/ crate) from a release build: one
#      table, figures in target/bench.json;
#   2. instructions and locked read-modify-writes (scripts/locked_rmws.py,
#      objdump) per uncontended acquire+release under callgrind, if valgrind
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
    # "instructions locked-RMWs" of one whole run of mmpool-bench with these
    # arguments (locked read-modify-writes counted by scripts/locked_rmws.py).
    counts() {
        local out
        out=$(mktemp "$tmp/callgrind.XXXXXX")
        valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$out" \
            "$BIN" "$@" >/dev/null 2>"$tmp/log"
        echo "$(awk '/^(summary|totals):/ { print $2; exit }' "$out") $(python3 scripts/locked_rmws.py "$out")"
    }
    # A whole run of N pairs; two runs differ only by the pairs.
    instructions() { counts --callgrind-pair "$1" --pairs "$2"; }
    printf '%-16s %12s %10s %12s\n' implementation "instr/pair" "x floor" "locked RMWs"
    floor=""
    for impl in floor mmpool ref-std ref-parking_lot tokio mmpool-shared; do
        read -r base base_rmw < <(instructions "$impl" 0)
        read -r full full_rmw < <(instructions "$impl" "$PAIRS")
        per=$(awk -v a="$base" -v b="$full" -v n="$PAIRS" 'BEGIN { printf "%.1f", (b - a) / n }')
        rmw=$(awk -v a="$base_rmw" -v b="$full_rmw" -v n="$PAIRS" 'BEGIN { printf "%.2f", (b - a) / n }')
        if [ -z "$floor" ]; then
            floor=$per
            # The floor is one compare-and-swap and one add: a counter that
            # does not find those two counts nothing right.
            if [ "$rmw" != "2.00" ]; then
                echo "bench.sh: the floor shows $rmw locked RMWs per pair, not 2: scripts/locked_rmws.py is broken" >&2
                exit 1
            fi
        fi
        printf '%-16s %12s %10s %12s\n' "$impl" "$per" "$(awk -v p="$per" -v f="$floor" 'BEGIN { printf "%.2f", p / f }')" "$rmw"
    done
    echo "(valgrind --tool=callgrind; (Ir of $PAIRS pairs - Ir of 0 pairs) / $PAIRS, same binary;"
    echo " locked RMWs: instructions with a lock prefix, or xchg with memory, that ran, the same way;"
    echo " mmpool-shared: a pool shared between processes, through the same C functions)"

    section "instructions per hand-off: a release granting a sleeping waiter, and its wake-up (callgrind)"
    ROUNDS=1000
    [ -n "$QUICK" ] && ROUNDS=200
    handoff() { counts --callgrind-handoff "$1" --rounds "$2"; }
    printf '%-16s %14s %12s\n' implementation "instr/hand-off" "locked RMWs"
    for impl in mmpool ref-std ref-parking_lot tokio; do
        read -r base base_rmw < <(handoff "$impl" 0)
        read -r full full_rmw < <(handoff "$impl" "$ROUNDS")
        printf '%-16s %14s %12s\n' "$impl" \
            "$(awk -v a="$base" -v b="$full" -v n="$ROUNDS" 'BEGIN { printf "%.0f", (b - a) / (2 * n) }')" \
            "$(awk -v a="$base_rmw" -v b="$full_rmw" -v n="$ROUNDS" 'BEGIN { printf "%.1f", (b - a) / (2 * n) }')"
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
