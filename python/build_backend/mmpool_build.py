"""The PEP 517 build backend of the mmpool Python package: setuptools, plus a
step that builds the Rust library with cargo and puts it, the C headers and a
CMake package config into the package as ``mmpool/_native/``.

``pip install .`` builds a wheel tagged ``py3-none-<platform>``: the package
is pure Python loading ``libmmpool.so`` through ctypes, so one wheel serves
every Python 3 version on a platform. ``pip install -e .`` writes the same
``_native/`` directory into the source tree (``python/mmpool/_native``).

``CARGO_TARGET_DIR`` is honoured; by default cargo builds in ``target/python``
so the release build does not disturb the checkout's ``target/debug``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from setuptools.build_meta import *  # noqa: F401,F403 - the PEP 517 hooks
from setuptools.command.build import build as _build
from setuptools.command.build_py import build_py as _build_py
from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = "libmmpool.so"
VERSION_RE = re.compile(r'^version\s*=\s*"([^"]+)"', re.M)


def crate_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    package = text.split("[package]", 1)[1]
    match = VERSION_RE.search(package)
    if not match:
        raise RuntimeError("no version in Cargo.toml's [package] table")
    return match.group(1)


def cargo_build() -> Path:
    """Builds the library in release mode and returns the .so's path."""
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target" / "python")
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    command = [cargo, "build", "--release", "--lib", "--manifest-path", str(ROOT / "Cargo.toml")]
    print("mmpool: " + " ".join(command), flush=True)
    try:
        subprocess.run(command, check=True, env=env)
    except FileNotFoundError:
        raise RuntimeError("cargo was not found: install Rust (https://rustup.rs) to build mmpool") from None
    return target / "release" / LIBRARY


CONFIG = """\
# CMake package config of the mmpool Python package: the imported target
# mmpool::mmpool is the library the package loads, so a C/C++ extension built
# with it shares Python's global pool. Found with
#   cmake -Dmmpool_DIR="$(python -c 'import mmpool; print(mmpool.get_cmake_dir())')"
get_filename_component(_mmpool_root "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
if(NOT TARGET mmpool::mmpool)
  add_library(mmpool::mmpool SHARED IMPORTED)
  set_target_properties(mmpool::mmpool PROPERTIES
    IMPORTED_LOCATION "${_mmpool_root}/lib/libmmpool.so"
    IMPORTED_SONAME "libmmpool.so.@MAJOR@"
    INTERFACE_INCLUDE_DIRECTORIES "${_mmpool_root}/include")
endif()
set(mmpool_INCLUDE_DIR "${_mmpool_root}/include")
set(mmpool_LIBRARIES mmpool::mmpool)
unset(_mmpool_root)
"""

VERSION_CONFIG = """\
# Compatible when the major version matches and the version is at least the one asked for.
set(PACKAGE_VERSION "@VERSION@")
if(PACKAGE_FIND_VERSION_MAJOR STREQUAL "@MAJOR@" AND NOT PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
elseif(NOT PACKAGE_FIND_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
else()
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
endif()
"""


def write_native(dest: Path) -> None:
    """Fills ``dest`` (the package's ``_native``) with lib/, include/, cmake/."""
    library = cargo_build()
    version = crate_version()
    major = version.split(".")[0]
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "lib").mkdir(parents=True)
    (dest / "include").mkdir()
    (dest / "cmake").mkdir()
    shutil.copy2(library, dest / "lib" / LIBRARY)
    for header in sorted((ROOT / "include").glob("mmpool*.h*")):
        shutil.copy2(header, dest / "include" / header.name)
    fill = lambda text: text.replace("@VERSION@", version).replace("@MAJOR@", major)  # noqa: E731
    (dest / "cmake" / "mmpoolConfig.cmake").write_text(fill(CONFIG))
    (dest / "cmake" / "mmpoolConfigVersion.cmake").write_text(fill(VERSION_CONFIG))


class BuildPy(_build_py):
    """build_py that also writes ``mmpool/_native`` (into the build tree, or
    into the source tree for an editable install)."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            dest = ROOT / "python" / "mmpool" / "_native"
        else:
            dest = Path(self.build_lib) / "mmpool" / "_native"
        write_native(dest)


class Build(_build):
    """Keeps setuptools' scratch files under target/ rather than ./build."""

    def initialize_options(self) -> None:
        super().initialize_options()
        self.build_base = str(ROOT / "target" / "python" / "setuptools")


class PlatformWheel(_bdist_wheel):
    """A wheel for one platform but any Python 3: it carries a native
    library but no CPython extension module."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> tuple[str, str, str]:
        return "py3", "none", super().get_tag()[2]


