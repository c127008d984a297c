"""A lease dropped while it holds bytes gives them back and says where it was
acquired, as an unclosed file does; detach() keeps the bytes on purpose."""

from __future__ import annotations

import ctypes
import gc
import subprocess
import sys
import textwrap
import warnings

import pytest

import mmpool


def test_a_dropped_lease_gives_its_bytes_back_with_a_resource_warning():
    pool = mmpool.Pool(100)
    lease = pool.acquire(60)
    lease_id = lease.id
    with pytest.warns(ResourceWarning, match=r"unreleased lease of 60 bytes \(id 0x[0-9a-f]+\)") as caught:
        del lease
        gc.collect()
    assert f"{lease_id:#x}" in str(caught[0].message)
    assert pool.available_bytes == 100
    assert pool.stats().outstanding_leases == 0


def test_a_lease_in_a_reference_cycle_is_given_back_when_the_cycle_is_collected():
    pool = mmpool.Pool(100)

    class Holder:
        pass

    holder = Holder()
    holder.lease = pool.acquire(30)
    holder.me = holder  # only the cycle collector can free it
    del holder
    with pytest.warns(ResourceWarning, match="30 bytes"):
        gc.collect()
    assert pool.available_bytes == 100


def test_released_and_context_managed_leases_warn_nothing():
    pool = mmpool.Pool(100)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        with pool.acquire(10):
            pass
        lease = pool.acquire(10)
        lease.release()
        del lease
        gc.collect()
    assert pool.available_bytes == 100


def test_the_warning_names_the_line_that_acquired_the_lease(tmp_path):
    # As for files and sockets: with tracemalloc on, the warning shows where
    # the object was allocated, which is the acquire call.
    result = _run_dev(tmp_path,
        """
        import gc, mmpool
        pool = mmpool.Pool(100)
        def decode():
            lease = pool.acquire(40)  # ACQUIRED HERE
            raise RuntimeError("decode failed before release")
        try:
            decode()
        except RuntimeError:
            pass
        gc.collect()
        print("available", pool.available_bytes, flush=True)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["available", "100"]
    err = result.stderr
    assert "ResourceWarning: unreleased lease of 40 bytes" in err, err
    assert "Object allocated at" in err, err
    assert "lease = pool.acquire(40)  # ACQUIRED HERE" in err, err


def _run_dev(tmp_path, code: str) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` from a file (so tracebacks quote its lines) under
    ``-X dev`` (warnings shown) and ``-X tracemalloc``."""
    script = tmp_path / "decode.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, "-X", "dev", "-X", "tracemalloc=5", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_detach_keeps_the_bytes_for_other_code_which_releases_them_by_id():
    pool = mmpool.Pool(100)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        with pool.acquire(70) as lease:
            lease_id = lease.detach()
        assert lease_id == lease.id and lease.detached and not lease.released
        lease.release()  # the new owner releases it, not this object
        del lease
        gc.collect()
    assert pool.available_bytes == 30
    assert pool.stats().outstanding_leases == 1

    # C code holding the id returns the bytes with mmpool_release.
    class CLease(ctypes.Structure):
        _fields_ = [("id", ctypes.c_uint64), ("nbytes", ctypes.c_uint64)]

    c = ctypes.CDLL(mmpool.get_library_path())  # the same copy: dlopen returns the loaded one
    c.mmpool_release.argtypes = [ctypes.c_void_p, CLease]
    assert c.mmpool_release(pool.handle, CLease(lease_id, 70)) == 0
    assert pool.available_bytes == 100


def test_detach_of_a_released_lease_is_refused():
    pool = mmpool.Pool(10)
    lease = pool.acquire(5)
    lease.release()
    with pytest.raises(ValueError, match="already released"):
        lease.detach()
