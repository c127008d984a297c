#!/usr/bin/env bash
# The C/C++ side of mmpool, through CMake and ctest:
#   1. plain build (gcc): every test: the C ABI programs, the header as C11 and
#      C++17, mmpool.hpp, exported symbols, a staged and moved install (with
#      bin/mmpool), the three consumers (find_package, pkg-config, plain
#      -lmmpool) and the README's C example compiled as written;
#   2. the same C/C++ unit tests under valgrind (ctest -T memcheck): any error
#      or definite leak fails; a leak canary must be reported;
#   3. the unit tests rebuilt with AddressSanitizer + UBSan (clang, so
#      mmpool.hpp is also checked warning-free under clang++; gcc with
#      MMPOOL_TEST_NO_CLANG=1); a heap-overflow, an undefined-behaviour and a
#      leak canary, built the same way, must each be reported.
# Installs what it needs from Debian by package name (scripts/lib/packages.sh),
# the sanitizer runtimes included, and proves that the sanitizer compiler links
# an instrumented program before relying on it. Builds live under target/.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/packages.sh
. scripts/lib/packages.sh

jobs=${MMPOOL_TEST_JOBS:-2}

step() { printf '\n---- %s ----\n' "$*"; }
fail() { echo "test-c.sh: $*" >&2; exit 1; }

# ---- tools -------------------------------------------------------------------
# binutils: objdump for the exported-symbol and NEEDED checks.
mmpool_need_packages cmake pkg-config valgrind binutils gcc g++
san_cc=gcc san_cxx=g++
if [ "${MMPOOL_TEST_NO_CLANG:-0}" != 1 ]; then
    mmpool_need_packages clang
    # `clang` leaves its sanitizer runtimes to a package it only recommends.
    clang_major=$(clang -dumpversion | cut -d. -f1)
    mmpool_need_packages "libclang-rt-${clang_major}-dev"
    san_cc=clang san_cxx=clang++
fi

# Proves that a compiler builds and runs an instrumented program, so that a
# missing runtime fails here, by name, and not as a link error deep in a build.
probe_sanitizers() {
    local cc=$1 lang=$2 dir=target/cmake-probe
    mkdir -p "$dir"
    printf 'int main(void) { volatile int x = 1; return x - 1; }\n' >"$dir/probe.c"
    "$cc" -x "$lang" -fsanitize=address,undefined "$dir/probe.c" -o "$dir/probe-$cc" \
        || fail "$cc cannot link -fsanitize=address,undefined (is its sanitizer runtime installed?)"
    "$dir/probe-$cc" || fail "$cc's instrumented probe program does not run"
}
probe_sanitizers "$san_cc" c
probe_sanitizers "$san_cxx" c++

# Configures BUILD_DIR from scratch whenever its compilers or options differ
# from the last configuration, then checks that the cache holds what was asked:
# CMake silently drops a cache (and with it -DMMPOOL_SANITIZE) when the
# compiler changes under an existing build directory.
configure() {
    local dir=$1 cc=$2 cxx=$3 sanitize=$4
    local want
    want="cc=$(command -v "$cc") $("$cc" --version | head -n1); cxx=$(command -v "$cxx"); sanitize=$sanitize; type=Debug"
    if [ ! -f "$dir/mmpool-configured-for" ] || [ "$(cat "$dir/mmpool-configured-for")" != "$want" ]; then
        rm -rf "$dir"
    fi
    # Absolute paths: a bare name given again to a configured directory is
    # cached as given (`UNINITIALIZED=gcc`), not as the path CMake found.
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER="$(command -v "$cc")" \
        -DCMAKE_CXX_COMPILER="$(command -v "$cxx")" -DMMPOOL_SANITIZE="$sanitize" >/dev/null
    local cache=$dir/CMakeCache.txt
    # NAME:TYPE=VALUE, compared as plain strings (compiler names hold a `+`).
    cached() { awk -v k="$1" -v v="$2" 'index($0, k ":") == 1 && substr($0, index($0, "=") + 1) == v { f = 1 }
                                        END { exit !f }' "$cache"; }
    cached MMPOOL_SANITIZE "$sanitize" || fail "$dir: MMPOOL_SANITIZE is not '$sanitize'"
    cached CMAKE_BUILD_TYPE Debug || fail "$dir: the build type is not Debug"
    cached CMAKE_C_COMPILER "$(command -v "$cc")" || fail "$dir: the C compiler is not $cc"
    cached CMAKE_CXX_COMPILER "$(command -v "$cxx")" || fail "$dir: the C++ compiler is not $cxx"
    echo "$want" >"$dir/mmpool-configured-for"
}

# ---- 1. plain build, all tests -----------------------------------------------
plain=target/cmake-test
step "configure and build ($plain, gcc)"
configure "$plain" gcc g++ ""
cmake --build "$plain" -j "$jobs"

step "ctest: unit and package tests"
ctest --test-dir "$plain" -j "$jobs" --output-on-failure --no-tests=error -LE canary

# ---- 2. valgrind ---------------------------------------------------------------
step "ctest -T memcheck: unit tests under valgrind"
# Each test's exit status carries valgrind's verdict (--error-exitcode=1).
rm -f "$plain"/Testing/Temporary/MemoryChecker.*.log
ctest --test-dir "$plain" -T memcheck -L unit -j "$jobs" --output-on-failure --no-tests=error
# A second look at the logs, should the exit status ever not carry a leak.
if grep -l "definitely lost: [1-9]" "$plain"/Testing/Temporary/MemoryChecker.*.log 2>/dev/null; then
    fail "valgrind reported definite leaks (logs above)"
fi

step "valgrind canary: a deliberate leak must be reported"
rm -f "$plain"/Testing/Temporary/MemoryChecker.*.log
if ctest --test-dir "$plain" -T memcheck -L canary --no-tests=error >"$plain/canary-memcheck.log" 2>&1; then
    cat "$plain/canary-memcheck.log"
    fail "the leak canary passed under valgrind: memcheck is not checking"
fi
grep -q "definitely lost: [1-9]" "$plain"/Testing/Temporary/MemoryChecker.*.log ||
    { cat "$plain/canary-memcheck.log"; fail "valgrind's log does not report the canary's leak"; }
echo "valgrind reported the canary's leak"

# ---- 3. AddressSanitizer + UBSan ---------------------------------------------
asan=target/cmake-asan
step "configure and build ($asan, $san_cc, ASan + UBSan)"
configure "$asan" "$san_cc" "$san_cxx" address
cmake --build "$asan" -j "$jobs"

step "sanitizer canaries: a heap overflow, undefined behaviour and a leak must be reported"
# Each canary passes only when its sanitizer's report appears in its output.
ctest --test-dir "$asan" -L canary -j "$jobs" --output-on-failure --no-tests=error
ran=$(ctest --test-dir "$asan" -L canary -N | sed -n 's/^Total Tests: //p')
[ "$ran" = 3 ] || fail "expected 3 sanitizer canaries, ctest lists $ran"

step "ctest: unit tests under ASan + UBSan"
ctest --test-dir "$asan" -L unit -j "$jobs" --output-on-failure --no-tests=error

step "C/C++ tests passed (plain, valgrind with its canary, ASan+UBSan with $san_cxx and its canaries)"
