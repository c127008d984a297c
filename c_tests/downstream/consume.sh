#!/usr/bin/env bash
# Builds and runs a consumer of the installed mmpool at PREFIX, one of three ways:
#   cmake       find_package(mmpool CONFIG REQUIRED): shared, static and C++ targets
#   pkg-config  `pkg-config --cflags --libs mmpool`, and mmpool-static for the archive
#   plain       -I PREFIX/include -L PREFIX/lib -lmmpool
# Usage: consume.sh WAY PREFIX WORK_DIR VERSION   (CC, CXX, CMAKE from the environment)
set -euo pipefail
way=$1 prefix=$2 work=$3 version=$4
here=$(cd "$(dirname "$0")" && pwd)
cc=${CC:-cc} cmake=${CMAKE:-cmake}
flags=(-std=c11 -Wall -Wextra -Werror -pedantic "-DMMPOOL_EXPECTED_VERSION=\"$version\"")
rm -rf "$work"
mkdir -p "$work"

# The binary must find libmmpool.so.<major> (shared) or not need it (static).
needs() { objdump -p "$1" | awk '$1 == "NEEDED" {print $2}'; }
expect_shared() {
    needs "$1" | grep -qx "libmmpool.so.${version%%.*}" ||
        { echo "FAILED: $1 does not need libmmpool.so.${version%%.*}"; needs "$1"; exit 1; }
}
expect_static() {
    if needs "$1" | grep -q libmmpool; then echo "FAILED: $1 links libmmpool dynamically"; exit 1; fi
}

case $way in
cmake)
    "$cmake" -S "$here" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" \
        -DMMPOOL_EXPECTED_VERSION="$version" -DCMAKE_C_COMPILER="$cc" \
        -DCMAKE_CXX_COMPILER="${CXX:-c++}" >"$work/configure.log" ||
        { cat "$work/configure.log"; exit 1; }
    "$cmake" --build "$work/build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
    expect_shared "$work/build/app_shared"
    expect_static "$work/build/app_static"
    "$work/build/app_shared"
    "$work/build/app_static"
    "$work/build/app_cxx"
    ;;
pkg-config)
    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
    got=$(pkg-config --modversion mmpool)
    [ "$got" = "$version" ] || { echo "FAILED: pkg-config says version $got, expected $version"; exit 1; }
    pkg-config --validate mmpool
    pkg-config --validate mmpool-static
    libdir=$(pkg-config --variable=libdir mmpool)
    # shellcheck disable=SC2046 # word splitting of the flags is intended
    "$cc" "${flags[@]}" "$here/app.c" -o "$work/app_shared" \
        $(pkg-config --cflags --libs mmpool) -Wl,-rpath,"$libdir"
    expect_shared "$work/app_shared"
    "$work/app_shared"
    # Static: the module mmpool-static names the archive itself, with and
    # without --static.
    for static_flag in "" --static; do
        # shellcheck disable=SC2046 # word splitting of the flags is intended
        "$cc" "${flags[@]}" "$here/app.c" -o "$work/app_static" \
            $(pkg-config $static_flag --cflags --libs mmpool-static)
        expect_static "$work/app_static"
        "$work/app_static"
    done
    ;;
plain)
    "$cc" "${flags[@]}" "$here/app.c" -o "$work/app_plain" \
        -I"$prefix/include" -L"$prefix/lib" -lmmpool -Wl,-rpath,"$prefix/lib"
    expect_shared "$work/app_plain"
    "$work/app_plain"
    ;;
*)
    echo "unknown way: $way" >&2
    exit 2
    ;;
esac
echo "consumer ($way): ok"
