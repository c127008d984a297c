#!/usr/bin/env bash
# The Python package's tests: builds and installs the package into a fresh
# virtual environment the way a user would (`pip install .`), checks that an
# editable install works too and that the `mmpool` command lands on the venv's
# PATH, then runs the pytest suite in python/tests.
# Installs what it needs (a venv-capable Python, its headers, gcc, cmake,
# readelf) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=target/python/venv

apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "test-python.sh: please install: $*" >&2
        exit 1
    fi
}

command -v "$PYTHON" >/dev/null || apt_install python3 python3-venv python3-pip
command -v gcc >/dev/null || apt_install gcc
command -v cmake >/dev/null || apt_install cmake
command -v readelf >/dev/null || apt_install binutils
# mmpool._core is a CPython extension: building it needs Python.h.
PY_INCLUDE=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -f "$PY_INCLUDE/Python.h" ] || apt_install python3-dev

mkdir -p target/python
if ! "$PYTHON" -m venv --clear "$VENV" 2>/dev/null; then
    apt_install python3-venv
    "$PYTHON" -m venv --clear "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

echo "--- editable install (pip install -e .)"
"${PIP[@]}" install -q -e .
(cd target/python && ../../"$VENV"/bin/python -c '
import mmpool, pathlib
here = pathlib.Path(mmpool.__file__).resolve()
assert here.parent.parent.name == "python", here  # the checkout, not a copy
with mmpool.Pool(8).acquire(8):
    pass
core = pathlib.Path(mmpool._lib.core.__file__)
assert core.parent == here.parent, core  # the compiled module built in place
print("editable install:", here.parent, mmpool.get_library_path(), core.name)
')

echo "--- pip install .[test]"
"${PIP[@]}" install -q ".[test]"
"$VENV/bin/mmpool" --help >/dev/null  # the command the package puts on PATH
echo "mmpool command: $VENV/bin/mmpool"

echo "--- pytest"
cd target/python  # not the checkout root, so `import mmpool` is the installed package
../../"$VENV"/bin/python -m pytest ../../python/tests -q -p no:cacheprovider
