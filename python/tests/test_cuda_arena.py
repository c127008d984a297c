"""CUDA arenas (mmpool.cuda) over the stand-in runtime tests/fake_cudart:
leases and tokens as pointers, gated allocations drawn from the arena with
no cudaMalloc, and an exported arena opened in another process that reads
the producer's bytes. Each test runs in child interpreters: the runtime is
loaded once per process, and these point MMPOOL_CUDART at the stand-in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO

FAKE_SRC = REPO / "tests" / "fake_cudart" / "fake_cudart.c"

# Run at the top of every child: the package, the stand-in's counters.
PRELUDE = """
import ctypes, os, sys
import mmpool, mmpool.cuda
fake = ctypes.CDLL(os.environ["MMPOOL_CUDART"])
for name in ("malloc_calls", "free_calls", "host_live_count", "ipc_open_count"):
    getattr(fake, "fake_cudart_" + name).restype = ctypes.c_ulong
def calls():
    return fake.fake_cudart_malloc_calls(), fake.fake_cudart_free_calls()
"""


@pytest.fixture(scope="module")
def fake_cudart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the stand-in CUDA runtime")
    out = tmp_path_factory.mktemp("fake_cudart") / "libfake_cudart.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(out), str(FAKE_SRC), "-lpthread"], check=True)
    return out


def child(fake: Path, code: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, MMPOOL_CUDART=str(fake))
    source = PRELUDE + textwrap.dedent(code)
    return subprocess.Popen(
        [sys.executable, "-c", source, *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_child(fake: Path, code: str) -> str:
    p = child(fake, code)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, f"child failed:\n{out}\n{err}"
    return out


def test_a_device_arena_turns_leases_into_pointers_and_serves_gated_allocations(fake_cudart: Path) -> None:
    run_child(
        fake_cudart,
        """
        pool = mmpool.Pool(1 << 16, placed=True)
        before = calls()
        arena = pool.cuda_arena("device", device=0)
        assert calls() == (before[0] + 1, before[1]), "one cudaMalloc"
        assert arena.nbytes == 1 << 16 and arena.base and arena.kind == "device" and not arena.opened
        pad = pool.acquire(1000)
        lease = pool.acquire(5000)
        ptr = arena.pointer(lease)
        assert ptr == arena.base + lease.offset, (ptr, arena.base, lease.offset)
        assert ptr != arena.pointer(pad)
        ctypes.memmove(ptr, b"mmpool", 6)  # host memory behind the stand-in
        assert ctypes.string_at(arena.base + lease.offset, 6) == b"mmpool"

        # mmpool_cuda_malloc on this pool draws from the arena: no cudaMalloc.
        lib = mmpool._lib.lib
        lib.mmpool_cuda_malloc.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_uint64]
        lib.mmpool_cuda_free.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        d = ctypes.c_void_p()
        assert lib.mmpool_cuda_malloc(pool.handle, ctypes.byref(d), 2048, 0) == 0
        assert arena.base <= d.value < arena.base + arena.nbytes
        assert pool.stats().in_use_bytes == 8048
        assert lib.mmpool_cuda_free(pool.handle, d) == 0
        assert calls() == (before[0] + 1, before[1]), "no cudaMalloc or cudaFree per allocation"

        assert len(arena.export()) == 80 and arena.export() == arena.export()
        lease.release(); pad.release()
        arena.free(); arena.free()
        assert calls() == (before[0] + 1, before[1] + 1), "one cudaFree"
        try:
            arena.pointer(lease)
        except ValueError as e:
            assert "freed" in str(e)
        else:
            raise AssertionError("a freed arena gave a pointer")
        """,
    )


def test_refusals_name_the_reason_and_leave_the_pool_whole(fake_cudart: Path) -> None:
    run_child(
        fake_cudart,
        """
        plain = mmpool.Pool(1 << 16)
        try:
            plain.cuda_arena()
        except ValueError as e:
            assert "placed pool" in str(e), e
        else:
            raise AssertionError("an arena over a pool that is not placed")
        pool = mmpool.Pool(1 << 16, placed=True)
        try:
            pool.cuda_arena("device", device=3)
        except mmpool.CudaError as e:
            assert "cudaErrorInvalidDevice" in str(e), e
        else:
            raise AssertionError("an arena on a device that does not exist")
        try:
            pool.cuda_arena("texture")
        except ValueError as e:
            assert "'device' or 'pinned'" in str(e), e
        else:
            raise AssertionError("an unknown kind")
        s = pool.stats()
        assert (s.available_bytes, s.grants) == (1 << 16, 0)

        pinned = pool.cuda_arena("pinned")
        assert fake.fake_cudart_host_live_count() == 1 and pinned.device == -1
        try:
            pinned.export()
        except ValueError as e:
            assert "pinned host" in str(e), e
        else:
            raise AssertionError("a pinned arena was exported")
        with pool.acquire(100) as lease:
            assert pinned.pointer(lease) == pinned.base + lease.offset
        pinned.free()
        assert fake.fake_cudart_host_live_count() == 0
        try:
            mmpool.cuda.open_arena(pool, b"short")
        except ValueError as e:
            assert "80 bytes" in str(e), e
        else:
            raise AssertionError("a blob of the wrong size was opened")
        """,
    )


def test_a_hand_off_token_becomes_the_pointer_of_its_lease(fake_cudart: Path) -> None:
    run_child(
        fake_cudart,
        """
        pool = mmpool.Pool(1 << 16, placed=True)
        arena = pool.cuda_arena()
        pad = pool.acquire(3000)
        lease = pool.acquire(1000)
        ptr = arena.pointer(lease)
        token = lease.share(2)
        before = calls()
        assert arena.token_pointer(token) == ptr
        assert calls() == before, "no CUDA call"
        forged = bytearray(token)
        forged[24] ^= 1  # the offset
        try:
            arena.token_pointer(bytes(forged))
        except ValueError as e:
            assert "altered" in str(e), e
        else:
            raise AssertionError("a forged token gave a pointer")
        pool.complete(token, 0)
        pool.complete(token, 1)
        try:
            arena.token_pointer(token)
        except ValueError as e:
            assert "finished" in str(e), e
        else:
            raise AssertionError("a finished hand-off gave a pointer")
        pad.release()
        arena.free()
        """,
    )


# On one placed shared pool, the producer fills a lease's range, shares it
# (keeping the lease) and prints the exported arena and the token; each
# consumer, in a process of its own, attaches the pool, opens the arena once,
# turns the token into a pointer, checks the producer's bytes, answers in its
# own quarter and completes its part.
PRODUCER = """
pool = mmpool.SharedPool(sys.argv[1], 1 << 20, placed=True)
arena = pool.cuda_arena("device")
pad = pool.acquire(3000)
lease = pool.acquire(4096)
ptr = arena.pointer(lease)
ctypes.memmove(ptr, bytes(range(256)) * 16, 4096)
token = lease.share(2, keep_lease=True)
print(arena.export().hex(), token.hex(), flush=True)
pool.wait_handoff(token, timeout=60)
seen = ctypes.string_at(ptr, 4096)
for who in (1, 2):
    assert seen[who * 1024:(who + 1) * 1024] == bytes([who]) * 1024, who
assert seen[:1024] == (bytes(range(256)) * 4), "the rest is the producer's"
lease.release(); pad.release()
print("answered", calls()[0], pool.stats().available_bytes == 1 << 20, flush=True)
"""

CONSUMER = """
exported, token, who = bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3]), int(sys.argv[4])
pool = mmpool.SharedPool(sys.argv[1])
arena = mmpool.cuda.open_arena(pool, exported)
assert fake.fake_cudart_ipc_open_count() == 1 and arena.opened and arena.nbytes == 1 << 20
ptr = arena.token_pointer(token)
data = ctypes.string_at(ptr, 1024)
assert data == bytes(range(256)) * 4, data[:16]
ctypes.memmove(ptr + who * 1024, bytes([who]) * 1024, 1024)
assert calls() == (0, 0), "no cudaMalloc or cudaFree in a consumer"
pool.complete(token, who - 1)
arena.free()
assert fake.fake_cudart_ipc_open_count() == 0, "cudaIpcCloseMemHandle"
print("read", flush=True)
"""


def test_consumer_processes_turn_the_token_into_a_pointer_and_share_the_producers_bytes(
    fake_cudart: Path, shared_name: str
) -> None:
    producer = child(fake_cudart, PRODUCER, shared_name)
    assert producer.stdout is not None
    line = producer.stdout.readline().split()
    if len(line) != 2:
        out, err = producer.communicate(timeout=60)
        pytest.fail(f"the producer published nothing:\n{line} {out}\n{err}")
    exported, token = line
    for who in (1, 2):
        c = child(fake_cudart, CONSUMER, shared_name, exported, token, str(who))
        out, err = c.communicate(timeout=60)
        assert c.returncode == 0, f"consumer failed:\n{out}\n{err}"
        assert out.split() == ["read"], out
    out, err = producer.communicate(timeout=60)
    assert producer.returncode == 0, f"producer failed:\n{out}\n{err}"
    assert out.split() == ["answered", "1", "True"], out
