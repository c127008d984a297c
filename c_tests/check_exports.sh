#!/usr/bin/env bash
# The shared library exports only mmpool_* symbols, exports every function the
# header declares, and carries the SONAME libmmpool.so.<major>.
# Usage: check_exports.sh LIB_DIR HEADER VERSION
set -euo pipefail
lib_dir=$1 header=$2 version=$3
lib="$lib_dir/libmmpool.so.$version"
fail=0

exported=$(nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//' | sort -u)
[ -n "$exported" ] || { echo "FAILED: $lib exports nothing"; exit 1; }
strays=$(grep -v '^mmpool_' <<<"$exported" || true)
if [ -n "$strays" ]; then
    echo "FAILED: symbols outside the mmpool_ prefix are exported:"
    sed 's/^/  /' <<<"$strays"
    fail=1
fi

declared=$(grep -oE '\bmmpool_[a-z_0-9]+\(' "$header" | tr -d '(' | sort -u)
missing=$(comm -23 <(echo "$declared") <(echo "$exported"))
if [ -n "$missing" ]; then
    echo "FAILED: declared in mmpool.h but not exported:"
    sed 's/^/  /' <<<"$missing"
    fail=1
fi

soname=$(objdump -p "$lib" | awk '$1 == "SONAME" {print $2}')
if [ "$soname" != "libmmpool.so.${version%%.*}" ]; then
    echo "FAILED: SONAME is '$soname', expected libmmpool.so.${version%%.*}"
    fail=1
fi

[ "$fail" = 0 ] && echo "exports: $(wc -l <<<"$exported") symbols, all mmpool_*, all declared ones present; SONAME $soname"
exit "$fail"
