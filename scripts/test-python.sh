#!/usr/bin/env bash
# The Python package's tests: builds and installs the package into a fresh
# virtual environment the way a user would (`pip install .`), checks that an
# editable install works too and that the `mmpool` command lands on the venv's
# PATH, then runs the pytest suite in python/tests (the asyncio tests under
# both asyncio's loop and uvloop, which the test extra installs).
# Installs what it needs (a venv-capable Python, its headers, gcc, cmake,
# readelf) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=target/python/venv

# shellcheck source=scripts/lib/packages.sh
. scripts/lib/packages.sh
mmpool_need_python_build
mmpool_need_packages cmake

mkdir -p target/python
"$PYTHON" -m venv --clear "$VENV"
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
"$VENV/bin/python" -c 'import uvloop' # the asyncio tests run under uvloop too, never skipped here
echo "mmpool command: $VENV/bin/mmpool"

echo "--- pytest"
cd target/python  # not the checkout root, so `import mmpool` is the installed package
../../"$VENV"/bin/python -m pytest ../../python/tests -q -p no:cacheprovider
