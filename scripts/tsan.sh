#!/usr/bin/env bash
# Runs the Rust tests that exercise threads under ThreadSanitizer. Not part
# of the test command or CI: it needs a nightly toolchain with its standard
# library sources (the sanitizer needs std rebuilt with it: -Zbuild-std).
#
#   rustup toolchain install nightly
#   rustup component add rust-src --toolchain nightly
#   bash scripts/tsan.sh                 # the default test targets below
#   bash scripts/tsan.sh --test stress   # or any `cargo test` selection
#
# Any report fails the run (TSan exits non-zero). The build goes to
# target/tsan and takes several minutes on 2 cores (std is rebuilt).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
    echo "tsan.sh: needs the nightly toolchain with rust-src:" >&2
    echo "  rustup component add rust-src --toolchain nightly" >&2
    exit 2
fi

host=$(rustc +nightly -vV | sed -n 's/^host: //p')
selection=("$@")
if [ ${#selection[@]} -eq 0 ]; then
    # The engine's threaded tests, the C boundary, the stress test and the
    # shared pool's in-process tests.
    selection=(--lib --test pool_semantics --test ffi_boundary --test stress --test shared_semantics)
fi

export RUSTFLAGS="-Zsanitizer=thread -Cdebug-assertions=on"
export CARGO_TARGET_DIR=target/tsan
# Instrumented code runs 5 to 15 times slower: a shorter stress run.
export MMPOOL_STRESS_OPS=${MMPOOL_STRESS_OPS:-200000}
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
# LTO of the release profile does not apply to this debug build; -Zbuild-std
# needs an explicit target.
cargo +nightly test -Zbuild-std --target "$host" "${selection[@]}" -- --test-threads=2
