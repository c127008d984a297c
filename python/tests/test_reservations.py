"""Pool.set_reservation: labelled bytes a process holds outside any lease,
reported beside the budget (never taken from it); in a shared pool, per
process, and gone with the process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import mmpool
from conftest import wait_until


def test_reservations_are_reported_beside_the_budget():
    pool = mmpool.Pool(1000)
    pool.set_reservation("cuda-context", 500)
    pool.set_reservation("nvdec-surfaces", 300)
    pool.set_reservation("cuda-context", 600)  # replaces
    s = pool.stats()
    assert (s.reserved_bytes, s.total_bytes, s.available_bytes) == (900, 1000, 1000)
    assert s.reservations == ((os.getpid(), "cuda-context", 600), (os.getpid(), "nvdec-surfaces", 300))
    pool.set_reservation("cuda-context", 0)  # removes
    assert pool.stats().reservations == ((os.getpid(), "nvdec-surfaces", 300),)


@pytest.mark.parametrize("label", ["", "a\nb", "x" * 33, "a\0b"])
def test_bad_labels_are_refused(label):
    with pytest.raises(ValueError, match="label"):
        mmpool.Pool(10).set_reservation(label, 1)


def test_a_ninth_label_is_refused_naming_the_others():
    pool = mmpool.Pool(10)
    for i in range(8):
        pool.set_reservation(f"l{i}", 1)
    with pytest.raises(ValueError, match="l7"):
        pool.set_reservation("one-more", 1)
    with pytest.raises(TypeError):
        pool.set_reservation(b"bytes", 1)  # type: ignore[arg-type]


def test_a_shared_pool_keeps_each_processs_reservations_until_it_leaves(shared_name):
    pool = mmpool.SharedPool(shared_name, 1000)
    pool.set_reservation("cuda-context", 100)
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, mmpool
            pool = mmpool.SharedPool({shared_name!r})
            pool.set_reservation("nvdec-surfaces", 250)
            print("set", flush=True)
            sys.stdin.readline()
            """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "set"
        s = pool.stats()
        assert sorted(s.reservations) == sorted([(os.getpid(), "cuda-context", 100), (child.pid, "nvdec-surfaces", 250)])
        assert (s.reserved_bytes, s.available_bytes) == (350, 1000)
        child.kill()  # no detach: the pool finds it dead and ends its reservations
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    wait_until(lambda: pool.stats().reserved_bytes == 100, "the dead process's reservation to end")
    assert pool.stats().reservations == ((os.getpid(), "cuda-context", 100),)
