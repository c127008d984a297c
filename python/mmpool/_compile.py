"""How ``mmpool._core`` (``_core.c``) is compiled: one command, used by the
build backend for wheels and editable installs, and on first import in a
source checkout that was never built as a package.

Kept free of imports from the package: the build backend loads this file by
path, before there is any library to load.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

SOURCE = Path(__file__).resolve().with_name("_core.c")
SOURCES = [SOURCE, SOURCE.with_name("_ticket.c"), SOURCE.with_name("_notify.c")]
"""The module's C files: ``_core.c`` the module, pools and leases; ``_ticket.c``
tickets; ``_notify.c`` the notifier an event loop watches."""
HEADERS = [SOURCE.with_name("_core.h")]
"""What they share."""
LIMITED_API = "0x03090000"  # abi3 for CPython 3.9 and later
FILENAME = "_core.abi3.so"


def command(out: Path, library: Path, include: Path, rpath: str) -> list[str]:
    """The compiler command that builds ``out`` from :data:`SOURCES`, linked to
    ``library`` (whose SONAME becomes the module's NEEDED entry) and finding
    it at run time through ``rpath``."""
    compiler = shlex.split(os.environ.get("CC") or "gcc")
    python_include = sysconfig.get_paths()["include"]
    return [
        *compiler, "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall", "-Wextra",
        f"-DPy_LIMITED_API={LIMITED_API}",
        "-I", python_include, "-I", str(include),
        *(str(source) for source in SOURCES),
        "-L", str(library.parent), f"-l:{library.name}", f"-Wl,-rpath,{rpath}",
        "-o", str(out),
    ]  # fmt: skip


def compile_extension(out: Path, library: Path, include: Path, rpath: str) -> None:
    """Compiles the module into ``out`` (atomically: a reader never sees half
    a file). Raises ``RuntimeError`` with the compiler's words on failure."""
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        raise RuntimeError(
            f"Python.h was not found in {sysconfig.get_paths()['include']}: install the Python "
            "development headers (Debian: apt-get install python3-dev) to build mmpool"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    cmd = command(partial, library, include, rpath)
    print("mmpool: " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr, flush=True)
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise RuntimeError(f"no C compiler: {cmd[0]!r} was not found (install gcc, or set CC)") from None
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"compiling {', '.join(source.name for source in SOURCES)} failed:\n{result.stderr}")
    os.replace(partial, out)
