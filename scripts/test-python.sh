#!/usr/bin/env bash
# The Python package's tests: builds and installs the package into a fresh
# virtual environment the way a user would (`pip install .`), checks that an
# editable install works too, then runs the pytest suite in python/tests.
# Installs what it needs (a venv-capable Python, gcc, cmake) when missing.
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
print("editable install:", here.parent, mmpool.get_library_path())
')

echo "--- pip install .[test]"
"${PIP[@]}" install -q ".[test]"

echo "--- pytest"
cd target/python  # not the checkout root, so `import mmpool` is the installed package
../../"$VENV"/bin/python -m pytest ../../python/tests -q -p no:cacheprovider
