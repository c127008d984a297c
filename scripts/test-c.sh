#!/usr/bin/env bash
# The C/C++ side of mmpool, through CMake and ctest:
#   1. plain build (gcc): every test: the C ABI programs, the header as C11 and
#      C++17, mmpool.hpp, exported symbols, a staged and moved install, and the
#      three consumers (find_package, pkg-config, plain -lmmpool);
#   2. the same C/C++ unit tests under valgrind (ctest -T memcheck): any error
#      or definite leak fails;
#   3. the unit tests rebuilt with AddressSanitizer + UBSan (clang when it is
#      installed or installable, so mmpool.hpp is also checked warning-free
#      under clang++; gcc otherwise).
# Installs cmake, pkg-config, valgrind and clang from Debian when missing
# (MMPOOL_TEST_NO_CLANG=1 skips clang). Builds live under target/.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=${MMPOOL_TEST_JOBS:-2}

step() { printf '\n---- %s ----\n' "$*"; }

# ---- tools -------------------------------------------------------------------
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v valgrind >/dev/null || missing+=(valgrind)
command -v objdump >/dev/null || missing+=(binutils)
if [ "${MMPOOL_TEST_NO_CLANG:-0}" != 1 ] && ! command -v clang++ >/dev/null; then
    missing+=(clang)
fi
if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]}"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "missing tools (${missing[*]}) and no root apt-get to install them" >&2
        exit 1
    fi
fi
san_cc=gcc san_cxx=g++
if [ "${MMPOOL_TEST_NO_CLANG:-0}" != 1 ] && command -v clang++ >/dev/null; then
    san_cc=clang san_cxx=clang++
fi

# ---- 1. plain build, all tests -----------------------------------------------
plain=target/cmake-test
step "configure and build ($plain, gcc)"
cmake -S . -B "$plain" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++ \
    -DMMPOOL_SANITIZE= >/dev/null
cmake --build "$plain" -j "$jobs"

step "ctest: unit and package tests"
ctest --test-dir "$plain" -j "$jobs" --output-on-failure

# ---- 2. valgrind ---------------------------------------------------------------
step "ctest -T memcheck: unit tests under valgrind"
# Each test's exit status carries valgrind's verdict (--error-exitcode=1).
rm -f "$plain"/Testing/Temporary/MemoryChecker.*.log
ctest --test-dir "$plain" -T memcheck -L unit -j "$jobs" --output-on-failure
# A second look at the logs, should the exit status ever not carry a leak.
if grep -l "definitely lost: [1-9]" "$plain"/Testing/Temporary/MemoryChecker.*.log 2>/dev/null; then
    echo "valgrind reported definite leaks (logs above)" >&2
    exit 1
fi

# ---- 3. AddressSanitizer + UBSan ---------------------------------------------
asan=target/cmake-asan
step "configure and build ($asan, $san_cc, ASan + UBSan)"
cmake -S . -B "$asan" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER="$san_cc" \
    -DCMAKE_CXX_COMPILER="$san_cxx" -DMMPOOL_SANITIZE=address >/dev/null
cmake --build "$asan" -j "$jobs"

step "ctest: unit tests under ASan + UBSan"
ctest --test-dir "$asan" -L unit -j "$jobs" --output-on-failure

step "C/C++ tests passed (plain, valgrind, ASan+UBSan with $san_cxx)"
