"""Where the native files are: the shared library, the C headers and the CMake
package config that the installed package carries in ``mmpool/_native/``.

The package ships the library under its SONAME, ``libmmpool.so.0``, so that
``mmpool._core`` (linked with an rpath of ``$ORIGIN/_native/lib``) and C
extensions find the very file Python loads.

In a source checkout without a build of the package (``PYTHONPATH=python``),
the library comes from cargo's ``target/`` directory and the headers from
``include/``; ``MMPOOL_LIBRARY`` overrides the library path in every case.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_NATIVE = _PACKAGE / "_native"
_CHECKOUT = _PACKAGE.parent.parent

LIBRARY_NAME = "libmmpool.so.0"
"""The packaged library's file name: its SONAME."""
CARGO_LIBRARY_NAME = "libmmpool.so"
"""The name cargo gives it in ``target/``."""


def in_checkout() -> bool:
    """Whether the package is imported from a source checkout (``python/`` of
    the repository), not from an installed copy."""
    return (_CHECKOUT / "Cargo.toml").is_file()


def checkout_target() -> Path:
    """cargo's target directory of the checkout."""
    return Path(os.environ.get("CARGO_TARGET_DIR", _CHECKOUT / "target"))


def _checkout_candidates() -> list[Path]:
    if not in_checkout():
        return []
    target = checkout_target()
    return [target / "debug" / CARGO_LIBRARY_NAME, target / "release" / CARGO_LIBRARY_NAME]


def find_library() -> Path:
    """The shared library this package loads (and C extensions must link)."""
    override = os.environ.get("MMPOOL_LIBRARY")
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"MMPOOL_LIBRARY={override!r} is not a file; point it at libmmpool.so or unset it")
        return path.resolve()
    for candidate in [_NATIVE / "lib" / LIBRARY_NAME, *_checkout_candidates()]:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{LIBRARY_NAME} was not found in {_NATIVE / 'lib'}: install the package with "
        "`pip install .` (or `pip install -e .`), run `cargo build` in the source checkout, "
        "or set MMPOOL_LIBRARY to the library's path"
    )


def include_dir() -> Path:
    for candidate in (_NATIVE / "include", _CHECKOUT / "include"):
        if (candidate / "mmpool.h").is_file():
            return candidate
    raise FileNotFoundError(f"mmpool.h was not found in {_NATIVE / 'include'}: reinstall the package with `pip install .`")


def cmake_dir() -> Path:
    candidate = _NATIVE / "cmake"
    if (candidate / "mmpoolConfig.cmake").is_file():
        return candidate
    raise FileNotFoundError(
        f"mmpoolConfig.cmake was not found in {candidate}: it is written when the package is "
        "built, so install it with `pip install .` (or `pip install -e .` in a checkout)"
    )
