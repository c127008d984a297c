#!/usr/bin/env bash
# Runs every test of mmpool: the README's test command, and what CI runs.
# Each area's script installs what it needs (apt packages, pip wheels) itself,
# so this works on a fresh machine with only Rust, a C compiler and Python.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each heading after the first says how long the part before it took.
started=$SECONDS part_started=
section() {
    [ -z "$part_started" ] || printf '(%d s)\n' $((SECONDS - part_started))
    part_started=$SECONDS
    printf '\n==== %s ====\n' "$*"
}

section "Rust: unit, integration and header-freshness tests"
cargo test --all-targets
cargo test -p mmpool-bench --test smoke

# Every other area (loom, C/CMake, Python, shared pool, CUDA, ...) has its own script.
for script in scripts/test-*.sh; do
    [ -e "$script" ] || continue
    section "$script"
    bash "$script"
done

section "all tests passed in $((SECONDS - started)) s"
