"""The PEP 517 build backend of the mmpool Python package: setuptools, plus a
step that builds the Rust library and the ``mmpool`` command with cargo, puts
them, the C headers and a CMake package config into the package as
``mmpool/_native/``, and compiles the package's CPython extension
``mmpool/_core.abi3.so`` against that library.

``pip install .`` builds a wheel tagged ``cp39-abi3-<platform>``: the
extension uses only CPython's limited API, so one wheel serves CPython 3.9 and
every later version on a platform. ``pip install -e .`` writes the same files
into the source tree (``python/mmpool/``).

Building needs Rust (cargo), a C compiler (gcc, or ``CC``) and Python's
headers. ``CARGO_TARGET_DIR`` is honoured; by default cargo builds in
``target/python`` so the release build does not disturb ``target/debug``.
pip shows a build's output only with ``-v``; cargo's progress lines are also
written to the terminal (``/dev/tty``) when there is one.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional, TextIO

from setuptools.build_meta import *  # noqa: F401,F403 - the PEP 517 hooks
from setuptools.command.build import build as _build
from setuptools.command.build_py import build_py as _build_py
from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = "libmmpool.so"  # cargo's name for it
COMMAND = "mmpool"
VERSION_RE = re.compile(r'^version\s*=\s*"([^"]+)"', re.M)


def crate_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    package = text.split("[package]", 1)[1]
    match = VERSION_RE.search(package)
    if not match:
        raise RuntimeError("no version in Cargo.toml's [package] table")
    return match.group(1)


def _compile_module():
    """python/mmpool/_compile.py, loaded by path: importing the package would
    load a library that is not built yet."""
    path = ROOT / "python" / "mmpool" / "_compile.py"
    spec = importlib.util.spec_from_file_location("mmpool_compile", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _terminal() -> Optional[TextIO]:
    """The user's terminal, when pip (which captures a build's output unless
    run with -v) leaves one: progress written there is seen either way."""
    if sys.stderr.isatty():
        return None  # the output already reaches it
    try:
        return open("/dev/tty", "w")  # noqa: SIM115 - closed by the caller
    except OSError:
        return None


def _say(line: str, tty: Optional[TextIO]) -> None:
    print(line, file=sys.stderr, flush=True)
    if tty is not None:
        try:
            tty.write("\r\x1b[K" + line + "\n")  # from the line's start, past pip's spinner
            tty.flush()
        except OSError:
            pass


def cargo_build() -> Path:
    """Builds the library and the ``mmpool`` command in release mode, showing
    cargo's progress, and returns cargo's release directory."""
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target" / "python")
    env = dict(os.environ, CARGO_TARGET_DIR=str(target), CARGO_TERM_COLOR="never")
    command = [cargo, "build", "--release", "--lib", "--bin", COMMAND, "--manifest-path", str(ROOT / "Cargo.toml")]
    tty = _terminal()
    try:
        _say("mmpool: building the Rust library with cargo (the first build takes a minute or two): "
             + " ".join(command), tty)
        try:
            child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        except FileNotFoundError:
            raise RuntimeError(
                "cargo was not found: building mmpool from source needs Rust (https://rustup.rs)"
            ) from None
        assert child.stderr is not None
        for line in child.stderr:
            _say("mmpool: cargo: " + line.rstrip(), tty)
        if child.wait() != 0:
            raise RuntimeError(f"cargo build failed (exit status {child.returncode}); its output is above")
        _say("mmpool: cargo finished; compiling the Python extension", tty)
    finally:
        if tty is not None:
            tty.close()
    return target / "release"


CONFIG = """\
# CMake package config of the mmpool Python package: the imported target
# mmpool::mmpool is the library the package loads, so a C/C++ extension built
# with it shares Python's global pool. Found with
#   cmake -Dmmpool_DIR="$(python -c 'import mmpool; print(mmpool.get_cmake_dir())')"
get_filename_component(_mmpool_root "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
if(NOT TARGET mmpool::mmpool)
  add_library(mmpool::mmpool SHARED IMPORTED)
  set_target_properties(mmpool::mmpool PROPERTIES
    IMPORTED_LOCATION "${_mmpool_root}/lib/libmmpool.so.@MAJOR@"
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


def write_native(package: Path) -> None:
    """Fills the package directory ``package`` with ``_native/`` (lib/ with the
    library under its SONAME, bin/ with the command, include/, cmake/) and
    ``_core.abi3.so`` linked to that library through ``$ORIGIN``."""
    release = cargo_build()
    version = crate_version()
    major = version.split(".")[0]
    soname = f"{LIBRARY}.{major}"
    dest = package / "_native"
    if dest.exists():
        shutil.rmtree(dest)
    for sub in ("lib", "bin", "include", "cmake"):
        (dest / sub).mkdir(parents=True)
    shutil.copy2(release / LIBRARY, dest / "lib" / soname)
    shutil.copy2(release / COMMAND, dest / "bin" / COMMAND)
    for header in sorted((ROOT / "include").glob("mmpool*.h*")):
        shutil.copy2(header, dest / "include" / header.name)
    fill = lambda text: text.replace("@VERSION@", version).replace("@MAJOR@", major)  # noqa: E731
    (dest / "cmake" / "mmpoolConfig.cmake").write_text(fill(CONFIG))
    (dest / "cmake" / "mmpoolConfigVersion.cmake").write_text(fill(VERSION_CONFIG))
    compile_module = _compile_module()
    compile_module.compile_extension(
        package / compile_module.FILENAME, dest / "lib" / soname, dest / "include", "$ORIGIN/_native/lib"
    )


class BuildPy(_build_py):
    """build_py that also writes ``mmpool/_native`` and the extension (into the
    build tree, or into the source tree for an editable install)."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            write_native(ROOT / "python" / "mmpool")
        else:
            write_native(Path(self.build_lib) / "mmpool")


class Build(_build):
    """Keeps setuptools' scratch files under target/ rather than ./build."""

    def initialize_options(self) -> None:
        super().initialize_options()
        self.build_base = str(ROOT / "target" / "python" / "setuptools")


class PlatformWheel(_bdist_wheel):
    """A wheel for one platform and CPython 3.9 or later: its extension is
    built on the limited API (abi3)."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> tuple[str, str, str]:
        return "cp39", "abi3", super().get_tag()[2]


