"""Loads ``mmpool._core``, the compiled hot path: the copy that ``pip install``
built into the package or, in a source checkout that was never built as a
package (``PYTHONPATH=python``), one compiled on first import into cargo's
``target/python/checkout-ext/``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from . import _compile, _paths


def load(library: Path) -> ModuleType:
    """The module, linked to ``library`` (already loaded by ctypes)."""
    try:
        from . import _core  # type: ignore[attr-defined]

        return _core
    except ImportError as e:
        if not _paths.in_checkout():
            raise ImportError(
                f"mmpool's compiled module mmpool._core is missing or broken ({e}); "
                "reinstall the package (pip install mmpool, or pip install . in a checkout)"
            ) from e
    return _load_in_checkout(library)


def _load_in_checkout(library: Path) -> ModuleType:
    include = _paths.include_dir()
    rpath = str(library.parent)
    recipe = " ".join(_compile.command(Path(_compile.FILENAME), library, include, rpath))
    key = hashlib.sha256()
    files = [*_compile.SOURCES, *_compile.HEADERS, include / "mmpool.h"]
    for part in (*(path.read_bytes() for path in files), recipe.encode()):
        key.update(part)
    path = _paths.checkout_target() / "python" / "checkout-ext" / key.hexdigest()[:16] / _compile.FILENAME
    if not path.is_file():
        try:
            _compile.compile_extension(path, library, include, rpath)
        except RuntimeError as e:
            raise ImportError(f"mmpool._core could not be compiled in this checkout: {e}") from None
    spec = importlib.util.spec_from_file_location("mmpool._core", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mmpool._core"] = module
    spec.loader.exec_module(module)
    return module
