#!/usr/bin/env bash
# Builds the portable wheel and the sdist into dist/:
#
#   dist/mmpool-<version>.tar.gz
#   dist/mmpool-<version>-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
#
# The wheel is built from the sdist, as `python -m build` does, by the
# package's own build backend (python/build_backend), told through environment
# variables to link against glibc 2.17 with zig: cargo-zigbuild builds the
# library and the `mmpool` program, `zig cc` compiles the Python extension.
# Then the wheel is checked, and the script fails if a check does:
#   - `auditwheel show` reports the platform tag manylinux_2_17_x86_64;
#   - the library exports only mmpool_* (c_tests/check_exports.sh);
#   - its binaries are stripped, and it carries the headers, the CMake config,
#     the pkg-config file, py.typed and the license;
#   - `twine check` passes on the wheel and the sdist.
#
#   bash scripts/build-wheel.sh               build and check
#   bash scripts/build-wheel.sh --check WHEEL check a wheel that is already built
#
# Needs Rust, Python with its headers, gcc and binutils (installed when
# missing); ziglang, cargo-zigbuild, auditwheel, build and twine come from PyPI
# into target/wheel/tools. cargo builds in target/wheel/cargo, so a second run
# rebuilds nothing that did not change.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PLATFORM=manylinux_2_17_x86_64
WHEEL_PLATFORM=$PLATFORM.manylinux2014_x86_64
CARGO_TRIPLE=x86_64-unknown-linux-gnu.2.17  # cargo-zigbuild: the triple, then the glibc version
ZIG_TRIPLE=x86_64-linux-gnu.2.17
PYTHON=${PYTHON:-python3}
WORK=$ROOT/target/wheel
TOOLS=$WORK/tools
# Versions known to work together; newer ones are likely to, but are untried.
TOOL_PACKAGES=(ziglang==0.17.1 cargo-zigbuild==0.24.1 auditwheel==6.8.2 build==1.6.1 twine==7.0.0)

fail() { echo "build-wheel: FAILED: $*" >&2; exit 1; }

need_tools() {
    # shellcheck source=scripts/lib/packages.sh
    . scripts/lib/packages.sh
    mmpool_need_python_build
    local have pkg
    have=$("$TOOLS/bin/python" -m pip --disable-pip-version-check freeze 2>/dev/null || true)
    for pkg in "${TOOL_PACKAGES[@]}"; do
        if ! grep -qixF "$pkg" <<<"$have"; then
            echo "--- installing ${TOOL_PACKAGES[*]} into $TOOLS"
            "$PYTHON" -m venv --clear "$TOOLS"
            "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check "${TOOL_PACKAGES[@]}"
            break
        fi
    done
    ZIG=$("$TOOLS/bin/python" -c 'import ziglang, pathlib; print(pathlib.Path(ziglang.__file__).with_name("zig"))')
    [ -x "$ZIG" ] || fail "ziglang has no zig at $ZIG"
}

# The checks, on the wheel $1 (also what the test script's canary runs).
check_wheel() {
    local wheel=$1 report tag lib
    [ -f "$wheel" ] || fail "no wheel at $wheel"
    case $(basename "$wheel") in
        *-cp39-abi3-"$WHEEL_PLATFORM".whl) ;;
        *) fail "$(basename "$wheel") is not tagged cp39-abi3-$WHEEL_PLATFORM" ;;
    esac

    report=$("$TOOLS/bin/auditwheel" show "$wheel" 2>&1) || { echo "$report" >&2; fail "auditwheel show failed"; }
    echo "$report"
    tag=$(tr '\n' ' ' <<<"$report" | grep -oE 'consistent with the following platform tag: *"[^"]+"' \
        | grep -oE '"[^"]+"' | tr -d '"' || true)
    [ "$tag" = "$PLATFORM" ] || fail "auditwheel reports platform tag '${tag:-none}', not $PLATFORM"

    tmp=$(mktemp -d)  # the wheel unpacked; global, for the trap
    trap 'rm -rf "${tmp:-}"' EXIT
    "$TOOLS/bin/python" -m zipfile -e "$wheel" "$tmp"
    lib=$tmp/mmpool/_native/lib
    bash c_tests/check_exports.sh "$lib" "$tmp/mmpool/_native/include/mmpool.h" 0 || fail "exported symbols"
    for file in "$lib/libmmpool.so.0" "$tmp/mmpool/_native/bin/mmpool" "$tmp/mmpool/_core.abi3.so"; do
        if readelf -S --wide "$file" | grep -qE ' \.(symtab|debug_[a-z]+) '; then
            fail "$(basename "$file") is not stripped"
        fi
    done
    for file in mmpool/py.typed mmpool/_native/include/mmpool.h mmpool/_native/include/mmpool.hpp \
        mmpool/_native/cmake/mmpoolConfig.cmake mmpool/_native/cmake/mmpoolConfigVersion.cmake \
        mmpool/_native/lib/pkgconfig/mmpool.pc mmpool/_native/lib/libmmpool.so \
        "$(basename "$wheel" | cut -d- -f1,2).dist-info/licenses/LICENSE"; do
        [ -f "$tmp/$file" ] || fail "the wheel does not carry $file"
    done
    cmp -s "$tmp"/mmpool-*.dist-info/licenses/LICENSE LICENSE || fail "the wheel's LICENSE is not ./LICENSE"
    echo "build-wheel: $(basename "$wheel"): auditwheel: $tag; library $(stat -c %s "$lib/libmmpool.so.0") bytes" \
        "(stripped), command $(stat -c %s "$tmp/mmpool/_native/bin/mmpool") bytes, extension" \
        "$(stat -c %s "$tmp/mmpool/_core.abi3.so") bytes; wheel $(stat -c %s "$wheel") bytes"
}

if [ "${1:-}" = --check ]; then
    [ $# -eq 2 ] || fail "usage: $0 --check WHEEL"
    need_tools
    check_wheel "$2"
    exit 0
fi
[ $# -eq 0 ] || fail "usage: $0 [--check WHEEL]"

need_tools
version=$("$TOOLS/bin/python" -c 'import re, sys; print(re.search(r"^version\s*=\s*\"([^\"]+)\"", open("Cargo.toml").read(), re.M).group(1))')
mkdir -p dist
rm -f dist/mmpool-"$version".tar.gz dist/mmpool-"$version"-*.whl

echo "--- sdist"
"$TOOLS/bin/python" -m build --sdist --outdir dist . >"$WORK/sdist.log" 2>&1 \
    || { cat "$WORK/sdist.log"; fail "the sdist did not build"; }
sdist=dist/mmpool-$version.tar.gz
[ -f "$sdist" ] || fail "no $sdist"

echo "--- wheel from $sdist (cargo zigbuild --target $CARGO_TRIPLE, zig cc -target $ZIG_TRIPLE)"
# Unpacked in the same place every time, so that cargo's fingerprints of the
# last build hold and an unchanged source rebuilds nothing.
rm -rf "$WORK/sdist"
mkdir -p "$WORK/sdist"
tar -xzf "$sdist" -C "$WORK/sdist"
PATH=$TOOLS/bin:$PATH \
CARGO_TARGET_DIR=$WORK/cargo \
CARGO_ZIGBUILD_ZIG_PATH=$ZIG \
CARGO_PROFILE_RELEASE_DEBUG=0 \
CARGO_PROFILE_RELEASE_STRIP=symbols \
MMPOOL_CARGO_BUILD=zigbuild \
MMPOOL_CARGO_TARGET=$CARGO_TRIPLE \
MMPOOL_WHEEL_PLATFORM=$WHEEL_PLATFORM \
CC="$ZIG cc -target $ZIG_TRIPLE -s" \
    "$TOOLS/bin/python" -m build --wheel --outdir "$ROOT/dist" "$WORK/sdist/mmpool-$version" >"$WORK/wheel.log" 2>&1 \
    || { cat "$WORK/wheel.log"; fail "the wheel did not build"; }
wheel=dist/mmpool-$version-cp39-abi3-$WHEEL_PLATFORM.whl
[ -f "$wheel" ] || { ls dist; fail "no $wheel"; }

echo "--- checks"
check_wheel "$wheel"
"$TOOLS/bin/twine" --no-color check --strict "$wheel" "$sdist"
echo "build-wheel: wrote $wheel and $sdist"
