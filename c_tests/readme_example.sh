#!/usr/bin/env bash
# Compiles the README's C example exactly as written (the ```c block after the
# line `<!-- c_tests/readme_example.sh compiles and runs this -->`), with
# warnings as errors, links it to the build tree's libmmpool.so and runs it.
# Usage: readme_example.sh README INCLUDE_DIR LIB_DIR WORK_DIR  (CC from the environment)
set -euo pipefail
readme=$1 include=$2 lib=$3 work=$4
cc=${CC:-cc}
rm -rf "$work"
mkdir -p "$work"
awk '
    /^<!-- c_tests\/readme_example.sh compiles and runs this -->$/ { armed = 1; next }
    armed && /^```c$/ { inside = 1; next }
    inside && /^```$/ { exit }
    inside { print }
' "$readme" >"$work/app.c"
[ -s "$work/app.c" ] || { echo "FAILED: no C example found in $readme"; exit 1; }
"$cc" -std=c11 -Wall -Wextra -Werror -pedantic -I"$include" "$work/app.c" -o "$work/app" \
    -L"$lib" -lmmpool -Wl,-rpath,"$lib"
"$work/app"
echo "the README's C example compiles as written and runs: ok"
