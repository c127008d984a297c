"""The installed package is the wheel under test: scripts/test-wheel.sh names
the wheel file in MMPOOL_TEST_WHEEL and runs the suite against its install in
a fresh environment (the tests are skipped otherwise)."""

from __future__ import annotations

import os
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

import mmpool
from conftest import REPO

WHEEL = os.environ.get("MMPOOL_TEST_WHEEL")
pytestmark = pytest.mark.skipif(not WHEEL, reason="MMPOOL_TEST_WHEEL names no wheel (scripts/test-wheel.sh sets it)")


def test_the_package_under_test_is_the_wheel():
    assert WHEEL is not None
    package = Path(mmpool.__file__).resolve().parent
    # Imported from this environment's site-packages, not from the checkout.
    assert package.is_relative_to(Path(sys.prefix).resolve()), package
    assert not package.is_relative_to(REPO / "python"), package
    # Every file of the wheel's package is installed as the wheel has it.
    with zipfile.ZipFile(WHEEL) as wheel:
        names = [n for n in wheel.namelist() if n.startswith("mmpool/") and not n.endswith("/")]
        assert "mmpool/_native/lib/libmmpool.so.0" in names and "mmpool/_core.abi3.so" in names
        for name in names:
            assert (package.parent / name).read_bytes() == wheel.read(name), name
    assert Path(mmpool.get_library_path()) == package / "_native" / "lib" / "libmmpool.so.0"
    # The installed metadata is the wheel's, with each of its platform tags.
    python, abi, platforms = Path(WHEEL).name[: -len(".whl")].split("-")[2:5]
    tags = [line.split(": ", 1)[1] for line in metadata.distribution("mmpool").read_text("WHEEL").splitlines()
            if line.startswith("Tag: ")]
    assert tags == [f"{python}-{abi}-{platform}" for platform in platforms.split(".")]
