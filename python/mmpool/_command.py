"""The ``mmpool`` command that ``pip install`` puts on PATH: it runs the native
program the package ships (``_native/bin/mmpool``, built by cargo from the
same source as the library), with the same arguments."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROGRAM = Path(__file__).resolve().parent / "_native" / "bin" / "mmpool"


def main() -> None:
    if not PROGRAM.is_file():
        sys.exit(f"mmpool: the native program is missing at {PROGRAM}; reinstall the package")
    if not os.access(PROGRAM, os.X_OK):
        sys.exit(f"mmpool: {PROGRAM} is not executable; reinstall the package")
    os.execv(PROGRAM, [str(PROGRAM), *sys.argv[1:]])


if __name__ == "__main__":
    main()
