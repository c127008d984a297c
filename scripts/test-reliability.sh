#!/usr/bin/env bash
# The reliability suite's part of the test command, beyond `cargo test
# --all-targets` (which already runs the property tests, a short stress run
# and the replay of the fuzz corpus in a debug build):
#   * the stress test in a release build: 16 threads x 10^5 operations on an
#     in-process pool, and the same on a shared pool;
#   * the property tests in a release build with 20,000 cases.
# Both print their counts. `--long` runs 10^7 stress operations and 200,000
# property cases instead, and the shared pool's crash rounds (kill -9 of a
# holder, of the head waiter, of a process stopped inside the lock) 2,000
# times each instead of the 200 of every `cargo test`, with 3,000 corrupted
# segments instead of 300, and 500 hand-off rounds (consumer processes that
# complete, die after claiming, idle until the deadline or die inside the
# lock) instead of 20.
#
# A separate target dir keeps these builds from thrashing target/debug; LTO
# is switched off here because it only lengthens the build of a test.
set -euo pipefail
cd "$(dirname "$0")/.."

stress_ops=1600000
cases=20000
if [ "${1:-}" = "--long" ]; then
    stress_ops=10000000
    cases=200000
fi

export CARGO_TARGET_DIR=target/reliability
export CARGO_PROFILE_RELEASE_LTO=false
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16

echo "-- stress: $stress_ops operations on an in-process pool, and as many on a shared one, release build"
MMPOOL_STRESS_OPS=$stress_ops cargo test --release --test stress -- --nocapture

echo "-- property tests of the C ABI: $cases sequences, release build"
PROPTEST_CASES=$cases cargo test --release --test proptest_abi -- --nocapture

if [ "${1:-}" = "--long" ]; then
    echo "-- shared pool with real processes: 2000 crash rounds per case, 3000 corrupted segments, release build"
    MMPOOL_SHARED_ROUNDS=2000 MMPOOL_SHARED_FUZZ_CASES=3000 \
        cargo test --release --test shared_processes -- --nocapture
    echo "-- shared pool hand-offs with real processes: 500 rounds, release build"
    MMPOOL_SHARED_ROUNDS=500 cargo test --release --test shared_handoff -- --nocapture
fi
