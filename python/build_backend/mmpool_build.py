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

The same backend builds the portable (manylinux) wheel that
``scripts/build-wheel.sh`` makes; these variables, all unset by default, say
how:

``MMPOOL_CARGO_BUILD``
    cargo's build subcommand (default ``build``; ``zigbuild`` for
    cargo-zigbuild, which links against an older glibc with zig).
``MMPOOL_CARGO_TARGET``
    the ``--target`` passed to it (``x86_64-unknown-linux-gnu.2.17``: a glibc
    version after the triple is cargo-zigbuild's); the outputs are then in
    ``<target dir>/<triple>/release``.
``CC``
    the C compiler of the extension (``zig cc -target x86_64-linux-gnu.2.17``).
``MMPOOL_WHEEL_PLATFORM``
    the wheel's platform tag (``manylinux_2_17_x86_64.manylinux2014_x86_64``)
    in place of the build machine's; ``auditwheel show`` checks the claim.
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


def cargo_command(cargo: str) -> list[str]:
    """The cargo command line: ``MMPOOL_CARGO_BUILD`` names the subcommand and
    ``MMPOOL_CARGO_TARGET`` the target, if set."""
    command = [cargo, os.environ.get("MMPOOL_CARGO_BUILD") or "build", "--release", "-p", "mmpool",
               "--lib", "--bin", COMMAND, "--manifest-path", str(ROOT / "Cargo.toml")]  # fmt: skip
    target = os.environ.get("MMPOOL_CARGO_TARGET")
    if target:
        command += ["--target", target]
    return command


def release_dir(target_dir: Path) -> Path:
    """Where cargo puts the release outputs: ``<triple>/release`` for a
    ``--target`` build, without cargo-zigbuild's glibc suffix
    (``x86_64-unknown-linux-gnu.2.17`` builds into ``x86_64-unknown-linux-gnu``)."""
    target = os.environ.get("MMPOOL_CARGO_TARGET")
    if not target:
        return target_dir / "release"
    return target_dir / target.split(".", 1)[0] / "release"


def cargo_build() -> Path:
    """Builds the library and the ``mmpool`` command in release mode, showing
    cargo's progress, and returns cargo's release directory."""
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target" / "python")
    env = dict(os.environ, CARGO_TARGET_DIR=str(target), CARGO_TERM_COLOR="never")
    command = cargo_command(cargo)
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
    return release_dir(target)


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


LINKER_SCRIPT = """\
/* The development name of the library, as the symlink libmmpool.so of an
   installed C library is: `-lmmpool` links libmmpool.so.@MAJOR@ beside it. */
INPUT(libmmpool.so.@MAJOR@)
"""


def pkg_config(version: str) -> str:
    """``mmpool.pc`` for ``_native/lib/pkgconfig``: the CMake install's
    template (cmake/mmpool.pc.in) with a prefix relative to the file itself,
    so that it points inside the installed package wherever that is."""
    text = (ROOT / "cmake" / "mmpool.pc.in").read_text()
    for key, value in {
        "MMPOOL_PC_TO_PREFIX": "../..",
        "CMAKE_INSTALL_LIBDIR": "lib",
        "CMAKE_INSTALL_INCLUDEDIR": "include",
        "PROJECT_VERSION": version,
        "MMPOOL_PC_LIBS_PRIVATE": "",  # no static library in the package
    }.items():
        text = text.replace(f"@{key}@", value)
    if "@" in text:
        raise RuntimeError(f"cmake/mmpool.pc.in has a placeholder the build backend does not fill: {text}")
    return text


def write_native(package: Path) -> None:
    """Fills the package directory ``package`` with ``_native/`` (lib/ with the
    library under its SONAME, a linker script for ``-lmmpool`` and the
    pkg-config file; bin/ with the command; include/; cmake/) and
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
    (dest / "lib" / LIBRARY).write_text(fill(LINKER_SCRIPT))
    (dest / "lib" / "pkgconfig").mkdir()
    (dest / "lib" / "pkgconfig" / "mmpool.pc").write_text(pkg_config(version))
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
    built on the limited API (abi3). The platform is the build machine's, or
    ``MMPOOL_WHEEL_PLATFORM``. Its files go to platlib (the wheel's root), as
    a package with binaries must for auditwheel: setuptools sees no
    ``ext_modules`` (the backend compiles the extension itself), so it is
    told that there are some."""

    def finalize_options(self) -> None:
        self.distribution.has_ext_modules = lambda: True  # type: ignore[method-assign]
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> tuple[str, str, str]:
        return "cp39", "abi3", os.environ.get("MMPOOL_WHEEL_PLATFORM") or super().get_tag()[2]


