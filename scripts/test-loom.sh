#!/usr/bin/env bash
# Loom model checking of the engine (tests/loom.rs): every model explores all
# interleavings of its threads up to LOOM_MAX_PREEMPTIONS (3) preemptions.
# Each model runs in a process of its own, one per core at a time: models
# must not share a process, because a model is replayed from its start for
# every interleaving and must see the same program each time, while the
# engine keeps a few process-wide counters (pool tags) that another model in
# the same process would move between two replays.
#
#   bash scripts/test-loom.sh [FILTER]   # only the models whose name holds FILTER
#
# Optimised for the models' speed and a short build: release, without the
# release profile's LTO and debug information.
set -euo pipefail
cd "$(dirname "$0")/.."

export RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-3}
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=false

cargo test --release --test loom --no-run
bin=$(cargo test --release --test loom --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\/deps\/loom-[^"]*\)".*/\1/p' | tail -n1)
[ -x "$bin" ] || { echo "test-loom.sh: no test binary found for tests/loom.rs" >&2; exit 1; }

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
"$bin" --list --format terse ${1:+"$1"} | sed -n 's/: test$//p' >"$logs/models"
[ -s "$logs/models" ] || { echo "test-loom.sh: no model matches '${1:-}'" >&2; exit 1; }

# One process per model; each one's output is printed whole when it ends.
rc=0
xargs -P "$(nproc)" -I{} sh -c '"$1" --exact "$2" --test-threads=1 --nocapture >"$3/$2.log" 2>&1; s=$?; cat "$3/$2.log"; exit $s' \
    sh "$bin" {} "$logs" <"$logs/models" || rc=$?
models=$(wc -l <"$logs/models")
explored=$(cat "$logs"/*.log | sed -n 's/.*loom: [^:]*: \([0-9]*\) interleavings$/\1/p' | awk '{ s += $1 } END { print s + 0 }')
echo "loom: $models models, $explored interleavings in all"
[ "$rc" = 0 ] || { echo "test-loom.sh: a model failed (above)" >&2; exit 1; }
