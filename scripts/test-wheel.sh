#!/usr/bin/env bash
# The portable wheel, as a user without Rust gets it:
#   1. scripts/build-wheel.sh builds the sdist and, from it, the manylinux
#      wheel, and checks it (auditwheel show, exported symbols, contents,
#      twine check);
#   2. canary: the same check refuses a copy of that wheel whose `mmpool`
#      program was built against this machine's glibc;
#   3. the wheel goes into a fresh venv under a PATH without cargo or rustc
#      (shown to be absent), and from a directory outside the checkout the
#      Python test suite (python/tests, including the C extension that shares
#      the global pool, and test_wheel.py, which holds the installed package
#      to the wheel) and the `mmpool` command run against the installed copy.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
WORK=$ROOT/target/wheel
VENV=$WORK/venv

fail() { echo "test-wheel: FAILED: $*" >&2; exit 1; }

# shellcheck source=scripts/lib/packages.sh
. scripts/lib/packages.sh
mmpool_need_python_build
mmpool_need_packages cmake pkgconf

echo "--- build"
bash scripts/build-wheel.sh
version=$(grep -m1 -E '^version *=' Cargo.toml | cut -d'"' -f2)
wheel=$ROOT/dist/mmpool-$version-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
[ -f "$wheel" ] || fail "build-wheel.sh wrote no $wheel"

echo "--- canary: a program built against this machine's glibc must fail the check"
canary=$WORK/canary
rm -rf "$canary"
mkdir -p "$canary/tree/mmpool/_native/bin"
echo 'int main(void) { return 0; }' >"$canary/main.c"
gcc -O2 -s "$canary/main.c" -o "$canary/tree/mmpool/_native/bin/mmpool"  # __libc_start_main@GLIBC_2.34
cp "$wheel" "$canary/"
(cd "$canary/tree" && "$WORK/tools/bin/python" - "$canary/$(basename "$wheel")" <<'EOF'
import sys, zipfile, hashlib, base64, os
# Replaces mmpool/_native/bin/mmpool in the wheel, RECORD included.
path, name = sys.argv[1], "mmpool/_native/bin/mmpool"
data = open(name, "rb").read()
with zipfile.ZipFile(path) as z:
    items = [(i, z.read(i)) for i in z.infolist()]
with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
    for info, body in items:
        if info.filename == name:
            body = data
        elif info.filename.endswith(".dist-info/RECORD"):
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            body = "".join(f"{name},sha256={digest},{len(data)}\n" if line.startswith(name + ",") else line + "\n"
                           for line in body.decode().splitlines()).encode()
        z.writestr(info, body)
EOF
)
if bash scripts/build-wheel.sh --check "$canary/$(basename "$wheel")" >"$canary/check.log" 2>&1; then
    cat "$canary/check.log"
    fail "the check passed a wheel whose program needs the host's glibc"
fi
refusal=$(grep -oE "auditwheel reports platform tag 'manylinux_2_[0-9]+_x86_64', not manylinux_2_17_x86_64" "$canary/check.log") \
    || { cat "$canary/check.log"; fail "the canary failed for another reason than its glibc"; }
echo "canary refused, as it must be: $refusal"

echo "--- install into a fresh venv, with no Rust on PATH"
# Every directory of PATH that holds cargo or rustc is left out.
no_rust_path=$VENV/bin
IFS=: read -ra dirs <<<"$PATH"
for dir in "${dirs[@]}"; do
    [ -n "$dir" ] && [ ! -e "$dir/cargo" ] && [ ! -e "$dir/rustc" ] && no_rust_path+=":$dir"
done
in_venv() { env -u CARGO_TARGET_DIR -u MMPOOL_LIBRARY -u PYTHONPATH PATH="$no_rust_path" "$@"; }
in_venv bash -c '! command -v cargo && ! command -v rustc' >/dev/null \
    || fail "cargo or rustc is still on the test PATH: $no_rust_path"
echo "no cargo, no rustc on PATH=$no_rust_path"
"$PYTHON" -m venv --clear "$VENV"
in_venv "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$wheel[test]"

outside=$(mktemp -d)
trap 'rm -rf "$outside"' EXIT
cd "$outside"  # not the checkout: `import mmpool` can only be the installed package
in_venv "$VENV/bin/python" - "$VENV" <<'EOF'
import pathlib, sys, mmpool
venv = pathlib.Path(sys.argv[1]).resolve()
here = pathlib.Path(mmpool.__file__).resolve()
assert here.is_relative_to(venv / "lib"), f"mmpool was imported from {here}, not from the venv {venv}"
with mmpool.Pool(8).acquire(8):
    pass
print("installed package:", here.parent)
EOF

echo "--- the mmpool command"
[ "$(in_venv bash -c 'command -v mmpool')" = "$VENV/bin/mmpool" ] || fail "mmpool on PATH is not the venv's"
in_venv mmpool --version | grep -qxF "mmpool $version" || fail "mmpool --version does not say $version"
in_venv mmpool demo --workers 2 --requests 10 >"$WORK/demo.log" 2>&1 \
    || { cat "$WORK/demo.log"; fail "mmpool demo failed"; }
# 2 workers x 10 requests: 20 grants, one per decode.
grep -qE '^grants +20 \(one per decode\)' "$WORK/demo.log" || { cat "$WORK/demo.log"; fail "mmpool demo did not grant 20"; }
echo "mmpool demo ran from the wheel: $(grep -m1 '^peak in use' "$WORK/demo.log")"

echo "--- pytest against the installed wheel"
rc=0
MMPOOL_TEST_WHEEL=$wheel in_venv "$VENV/bin/python" -m pytest "$ROOT/python/tests" -v -p no:cacheprovider \
    >"$WORK/pytest.log" 2>&1 || rc=$?
grep -vE ' PASSED +\[' "$WORK/pytest.log"  # all but the passing tests' lines
[ "$rc" = 0 ] || fail "pytest failed (exit $rc; whole log: $WORK/pytest.log)"
for test in "test_native.py::test_a_c_extension_shares_the_global_pool_with_python[gcc]" \
    "test_native.py::test_a_c_extension_shares_the_global_pool_with_python[cmake]" \
    "test_native.py::test_the_pkg_config_file_builds_a_program_against_the_package" \
    "test_wheel.py::test_the_package_under_test_is_the_wheel"; do
    grep -qF "$test PASSED" "$WORK/pytest.log" || fail "$test did not pass (skipped?)"
done
echo "test-wheel: the wheel installs and passes without Rust"
