#!/usr/bin/env bash
# Installs the build into STAGE/installed, checks the layout, then moves the
# tree to STAGE/moved (the original path is gone), so that the consumers built
# against it prove the package relocatable.
# Usage: stage_install.sh CMAKE BUILD_DIR STAGE VERSION
set -euo pipefail
cmake=$1 build=$2 stage=$3 version=$4
major=${version%%.*}
rm -rf "$stage"
mkdir -p "$stage"
"$cmake" --install "$build" --prefix "$stage/installed" >"$stage/install.log"

p="$stage/installed"
fail=0
expect_file() { [ -f "$p/$1" ] && [ ! -L "$p/$1" ] || { echo "FAILED: $1 is not a regular file"; fail=1; }; }
expect_link() {
    local target
    target=$(readlink "$p/$1" 2>/dev/null || true)
    [ "$target" = "$2" ] || { echo "FAILED: $1 -> '$target', expected a link to $2"; fail=1; }
}
expect_file "lib/libmmpool.so.$version"
expect_link "lib/libmmpool.so.$major" "libmmpool.so.$version"
expect_link "lib/libmmpool.so" "libmmpool.so.$major"
expect_file "lib/libmmpool.a"
expect_file "include/mmpool.h"
expect_file "include/mmpool.hpp"
expect_file "lib/cmake/mmpool/mmpoolConfig.cmake"
expect_file "lib/cmake/mmpool/mmpoolConfigVersion.cmake"
expect_file "lib/pkgconfig/mmpool.pc"
expect_file "lib/pkgconfig/mmpool-static.pc"
expect_file "bin/mmpool"
# Nothing in the package may remember where it was installed.
if grep -rl --binary-files=without-match "$p" "$p" >/dev/null 2>&1; then
    echo "FAILED: files name the install prefix $p:"
    grep -rl --binary-files=without-match "$p" "$p"
    fail=1
fi
[ "$fail" = 0 ] || exit 1

# The operators' command runs from the installed tree on its own: it names its
# version, and for a pool that does not exist it fails with a message.
[ -x "$p/bin/mmpool" ] || { echo "FAILED: bin/mmpool is not executable"; exit 1; }
if objdump -p "$p/bin/mmpool" | awk '$1 == "NEEDED" {print $2}' | grep -q libmmpool; then
    echo "FAILED: bin/mmpool needs libmmpool.so"; exit 1
fi
help=$("$p/bin/mmpool" --help)
grep -q "status" <<<"$help" || { echo "FAILED: bin/mmpool --help does not list status:"; echo "$help"; exit 1; }
missing="mmpool-stage-install-missing-$$"
if "$p/bin/mmpool" status "$missing" >"$stage/status.out" 2>&1; then
    echo "FAILED: bin/mmpool status of a missing pool succeeded"; cat "$stage/status.out"; exit 1
fi
grep -q "$missing" "$stage/status.out" ||
    { echo "FAILED: bin/mmpool status does not name the missing pool:"; cat "$stage/status.out"; exit 1; }

mv "$p" "$stage/moved"
echo "installed and moved to $stage/moved:"
(cd "$stage/moved" && find . \( -type f -o -type l \) | sort | sed 's/^/  /')
