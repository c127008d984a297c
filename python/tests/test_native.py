"""The native side: the compiled hot path is the package's own extension,
linked to the library the package ships; the header works with cffi and
matches the ctypes declarations; C extensions built against the package share
its global pool; and the installed package carries what it should."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mmpool
from mmpool import _lib
from conftest import REPO, run_python

cffi = pytest.importorskip("cffi")

EXTENSION = r"""
#include <mmpool.h>

static mmpool_lease held;

/* Acquires nbytes from the process's global pool; returns an mmpool_status. */
int ext_acquire(uint64_t nbytes) {
    mmpool *pool = mmpool_global();
    if (pool == NULL) return -1;
    mmpool_status status = mmpool_acquire(pool, nbytes, &held);
    mmpool_unref(pool);
    return (int)status;
}

/* Where this extension's calls into the library go. */
void *ext_symbol(void) { return (void *)&mmpool_version; }

int ext_release(void) {
    mmpool *pool = mmpool_global();
    if (pool == NULL) return -1;
    mmpool_status status = mmpool_release(pool, held);
    mmpool_unref(pool);
    return (int)status;
}

/* Installs a new global pool of total bytes from C. */
int ext_install(uint64_t total) {
    mmpool *pool = NULL;
    mmpool_status status = mmpool_init(total, &pool);
    if (status != MMPOOL_OK) return (int)status;
    status = mmpool_set_global(pool);
    mmpool_unref(pool);
    return (int)status;
}
"""


def cdef_text() -> str:
    """include/mmpool.h as cffi reads it: #include lines dropped (cffi knows
    the stdint types), then preprocessed so that no directive is left."""
    header = (Path(mmpool.get_include()) / "mmpool.h").read_text()
    body = "\n".join(line for line in header.splitlines() if not line.lstrip().startswith("#include"))
    return subprocess.run(["gcc", "-E", "-P", "-x", "c", "-"], input=body, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def header_ffi():
    ffi = cffi.FFI()
    ffi.cdef(cdef_text())
    return ffi


def load_extension(tmp_path: Path, name: str, build) -> ctypes.CDLL:
    path = build(tmp_path)
    ext = ctypes.CDLL(str(path))
    ext.ext_acquire.argtypes = [ctypes.c_uint64]
    ext.ext_install.argtypes = [ctypes.c_uint64]
    ext.ext_symbol.restype = ctypes.c_void_p
    return ext


def build_with_gcc(tmp_path: Path) -> Path:
    source = tmp_path / "ext.c"
    source.write_text(EXTENSION)
    out = tmp_path / "libext_gcc.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-I", mmpool.get_include(),
         str(source), mmpool.get_library_path(), "-o", str(out)],
        check=True,
    )
    return out


def build_with_cmake(tmp_path: Path) -> Path:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed (scripts/test-python.sh installs it)")
    (tmp_path / "ext.c").write_text(EXTENSION)
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\n"
        "project(ext C)\n"
        "find_package(mmpool 0.1 CONFIG REQUIRED)\n"
        "add_library(ext_cmake SHARED ext.c)\n"
        "target_link_libraries(ext_cmake PRIVATE mmpool::mmpool)\n"
    )
    build = tmp_path / "build"
    subprocess.run([cmake, "-S", str(tmp_path), "-B", str(build), f"-Dmmpool_DIR={mmpool.get_cmake_dir()}"],
                   check=True, capture_output=True)
    subprocess.run([cmake, "--build", str(build)], check=True, capture_output=True)
    return build / "libext_cmake.so"


def mapped_mmpool_files() -> set[str]:
    maps = Path("/proc/self/maps").read_text().splitlines()
    return {line.split()[-1] for line in maps if re.search(r"/libmmpool[^/]*\.so", line)}


@pytest.mark.parametrize("build", [build_with_gcc, build_with_cmake], ids=["gcc", "cmake"])
def test_a_c_extension_shares_the_global_pool_with_python(tmp_path, build):
    ext = load_extension(tmp_path, build.__name__, build)
    # One copy of the library in the process: the one Python loaded, which
    # the package's compiled module and this extension both call.
    assert mapped_mmpool_files() == {str(Path(mmpool.get_library_path()).resolve())}
    assert ext.ext_symbol() == _lib.core._library_symbol()
    assert ext.ext_symbol() == ctypes.cast(_lib.lib.mmpool_version, ctypes.c_void_p).value

    pool = mmpool.init_global_pool(1.0)
    assert ext.ext_acquire(1000) == _lib.OK
    assert pool.available_bytes == (1 << 30) - 1000  # Python sees C's lease
    assert ext.ext_release() == _lib.OK
    assert pool.available_bytes == 1 << 30

    # and the other way round: a global installed by C is Python's global
    assert ext.ext_install(4242) == _lib.OK
    seen = mmpool.global_pool()
    assert seen is not None and seen.total_bytes == 4242
    mmpool.set_global_pool(None)
    assert ext.ext_acquire(1) == -1  # C sees gating disabled


def test_the_header_is_consumable_by_cffi(header_ffi):
    lib = header_ffi.dlopen(mmpool.get_library_path())
    assert header_ffi.string(lib.mmpool_version()).decode() == mmpool.__version__
    out = header_ffi.new("mmpool **")
    assert lib.mmpool_init(100, out) == lib.MMPOOL_OK
    lease = header_ffi.new("mmpool_lease *")
    assert lib.mmpool_acquire(out[0], 60, lease) == lib.MMPOOL_OK
    assert lib.mmpool_available_bytes(out[0]) == 40
    assert lib.mmpool_try_acquire(out[0], 50, lease) == lib.MMPOOL_ERR_WOULD_BLOCK
    lib.mmpool_unref(out[0])


def ctypes_kind(t) -> tuple:
    """A ctypes type as (kind, size) for comparing with the header."""
    if t is None:
        return ("void", 0)
    if isinstance(t, type) and issubclass(t, ctypes.Structure):
        return ("struct", ctypes.sizeof(t))
    if t in (ctypes.c_void_p, ctypes.c_char_p) or (
        isinstance(t, type) and issubclass(t, (ctypes._Pointer, ctypes._CFuncPtr))  # type: ignore[attr-defined]
    ):
        return ("pointer", ctypes.sizeof(ctypes.c_void_p))
    if t is ctypes.c_double:
        return ("float", 8)
    return ("int", ctypes.sizeof(t))


def cffi_kind(ffi, t) -> tuple:
    if t.kind == "primitive" and t.cname == "void":
        return ("void", 0)
    if t.kind == "primitive":
        return ("float" if t.cname in ("double", "float") else "int", ffi.sizeof(t))
    if t.kind == "enum":
        return ("int", ffi.sizeof(t))
    if t.kind == "struct":
        return ("struct", ffi.sizeof(t))
    if t.kind in ("pointer", "function"):
        return ("pointer", ffi.sizeof("void *"))
    if t.kind == "void":
        return ("void", 0)
    raise AssertionError(f"unexpected type {t}")


@pytest.mark.parametrize("name", sorted(_lib.PROTOTYPES))
def test_ctypes_prototypes_match_the_header(header_ffi, name):
    restype, argtypes = _lib.PROTOTYPES[name]
    fn = header_ffi.typeof(getattr(header_ffi.dlopen(mmpool.get_library_path()), name))
    assert cffi_kind(header_ffi, fn.result) == ctypes_kind(restype)
    assert [cffi_kind(header_ffi, a) for a in fn.args] == [ctypes_kind(a) for a in argtypes]


@pytest.mark.parametrize("cname, struct", [("mmpool_stats", _lib.StatsStruct)])
def test_ctypes_structs_match_the_header(header_ffi, cname, struct):
    fields = header_ffi.typeof(cname).fields
    assert [name for name, _ in fields] == [name for name, *_ in struct._fields_]
    assert [f.offset for _, f in fields] == [getattr(struct, name).offset for name, *_ in struct._fields_]
    assert header_ffi.sizeof(cname) == ctypes.sizeof(struct)


def test_status_codes_match_the_header(header_ffi):
    lib = header_ffi.dlopen(mmpool.get_library_path())
    for name in dir(_lib):
        if name == "OK" or name.startswith("ERR_"):
            assert getattr(lib, "MMPOOL_" + name) == getattr(_lib, name), name


@pytest.mark.parametrize(
    "status, exception",
    [
        (_lib.ERR_INVALID_ARGUMENT, ValueError),
        (_lib.ERR_EXCEEDS_CAPACITY, ValueError),
        (_lib.ERR_INVALID_LEASE, ValueError),
        (_lib.ERR_TIMEOUT, TimeoutError),
        (_lib.ERR_CLOSED, mmpool.PoolClosedError),
        (_lib.ERR_SYSTEM, OSError),
        (_lib.ERR_CUDA, mmpool.CudaError),
        (_lib.ERR_INTERNAL, mmpool.InternalError),
    ],
)
def test_status_codes_map_to_python_exceptions(status, exception):
    assert type(_lib.error_for(status)) is exception


@pytest.mark.skipif("MMPOOL_LIBRARY" in os.environ, reason="MMPOOL_LIBRARY overrides the packaged library")
def test_the_installed_package_carries_library_headers_and_cmake_config():
    package = Path(mmpool.__file__).parent
    native = package / "_native"
    assert Path(mmpool.get_library_path()) == native / "lib" / "libmmpool.so.0"
    assert Path(mmpool.get_include()) == native / "include"
    assert Path(mmpool.get_cmake_dir()) == native / "cmake"
    assert (native / "include" / "mmpool.h").read_bytes() == (REPO / "include" / "mmpool.h").read_bytes()
    assert (native / "cmake" / "mmpoolConfig.cmake").is_file()
    assert (native / "cmake" / "mmpoolConfigVersion.cmake").is_file()
    assert os.access(native / "bin" / "mmpool", os.X_OK)
    assert (package / "py.typed").is_file()


def dynamic_section(path: Path) -> str:
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf (binutils) is not installed")
    return subprocess.run([readelf, "-d", str(path)], capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif("MMPOOL_LIBRARY" in os.environ, reason="MMPOOL_LIBRARY overrides the packaged library")
def test_the_hot_path_is_the_packaged_extension_linked_to_the_packaged_library():
    core = _lib.core
    package = Path(mmpool.__file__).parent
    # The compiled module itself, from the package (no fallback exists), on
    # the limited API, and the base of the public classes.
    assert Path(core.__file__) == package / "_core.abi3.so"
    assert core.PoolBase in mmpool.Pool.__mro__ and core.LeaseBase in mmpool.Lease.__mro__
    assert type(mmpool.Pool.acquire).__name__ == "method_descriptor"  # C, not a Python function
    # It needs the library by its SONAME and finds it next to itself.
    dynamic = dynamic_section(Path(core.__file__))
    assert "[libmmpool.so.0]" in dynamic and "[$ORIGIN/_native/lib]" in dynamic, dynamic
    assert "(SONAME)" in dynamic_section(Path(mmpool.get_library_path()))
    assert "[libmmpool.so.0]" in dynamic_section(Path(mmpool.get_library_path()))
    # And in the running process its calls go to the file ctypes loaded.
    maps = Path("/proc/self/maps").read_text()
    assert str(Path(core.__file__).resolve()) in maps
    assert core._library_symbol() == ctypes.cast(_lib.lib.mmpool_version, ctypes.c_void_p).value
    assert mapped_mmpool_files() == {str(Path(mmpool.get_library_path()).resolve())}


def test_the_extension_alone_finds_the_packaged_library():
    # In a fresh process, load the extension before anything else has mapped
    # the library: the rpath alone must find the same file.
    result = run_python(
        """
        import importlib.util, pathlib, re, sys
        spec = importlib.util.find_spec("mmpool")
        package = pathlib.Path(spec.origin).parent
        core_spec = importlib.util.spec_from_file_location("mmpool._core", package / "_core.abi3.so")
        core = importlib.util.module_from_spec(core_spec)
        core_spec.loader.exec_module(core)
        maps = pathlib.Path("/proc/self/maps").read_text().splitlines()
        print(*sorted({l.split()[-1] for l in maps if re.search(r"/libmmpool[^/]*[.]so", l)}))
        """
    )
    assert result.returncode == 0, result.stderr
    expected = Path(mmpool.get_library_path()).resolve()
    if "MMPOOL_LIBRARY" in os.environ or not (expected.parent.parent.parent / "_core.abi3.so").is_file():
        pytest.skip("not an installed package")
    assert result.stdout.split() == [str(expected)]


def test_package_crate_and_library_versions_agree():
    cargo = re.search(r'^version\s*=\s*"([^"]+)"', (REPO / "Cargo.toml").read_text(), re.M).group(1)
    pyproject = re.search(r'^version\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    from importlib.metadata import version

    assert cargo == pyproject == mmpool.__version__ == version("mmpool")


def test_a_source_checkout_compiles_the_extension_on_first_import(tmp_path):
    # PYTHONPATH=python in a checkout never built as a package (as the bench
    # and CUDA scripts use it): the module is compiled into cargo's target/
    # on first import, linked to the library found there, and reused after.
    checkout = tmp_path / "checkout"
    (checkout / "python").mkdir(parents=True)
    shutil.copytree(Path(mmpool.__file__).parent, checkout / "python" / "mmpool",
                    ignore=shutil.ignore_patterns("_native", "*.so", "__pycache__"))
    shutil.copytree(Path(mmpool.get_include()), checkout / "include")
    (checkout / "Cargo.toml").write_text("[package]\n")
    (checkout / "target" / "debug").mkdir(parents=True)
    shutil.copy2(mmpool.get_library_path(), checkout / "target" / "debug" / "libmmpool.so")
    env = {k: v for k, v in os.environ.items() if k not in ("MMPOOL_LIBRARY", "CARGO_TARGET_DIR")}
    env["PYTHONPATH"] = str(checkout / "python")
    code = "import mmpool; print(mmpool._lib.core.__file__, mmpool.get_library_path()); mmpool.Pool(9).acquire(9).release()"
    runs = [subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
            for _ in range(2)]
    for result in runs:
        assert result.returncode == 0, result.stderr
    core, library = runs[0].stdout.split()
    assert Path(core).parent.parent == checkout / "target" / "python" / "checkout-ext"
    assert library == str(checkout / "target" / "debug" / "libmmpool.so")
    assert "mmpool: " in runs[0].stderr and "_core.c" in runs[0].stderr  # compiled the first time,
    assert runs[1].stderr == "" and runs[1].stdout == runs[0].stdout  # reused the second
