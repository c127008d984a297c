"""Exceptions speak in the Python API's terms: the method that failed, never
the C function behind it."""

from __future__ import annotations

import os
import uuid

import pytest

import mmpool


def message_of(call) -> tuple[type, str]:
    with pytest.raises(Exception) as info:
        call()
    return type(info.value), str(info.value)


def failures():
    """(expected exception, expected start of the message, call) for each way a
    call can fail after reaching the library."""
    pool = mmpool.Pool(100)
    closed = mmpool.Pool(10)
    closed.close()
    released = pool.acquire(1)
    released.release()
    name = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    shared = mmpool.SharedPool(name, 50)
    mmpool.SharedPool.unlink(name)
    from mmpool.vllm import MultiModalGPUMemoryPool

    vllm_pool = MultiModalGPUMemoryPool(10)
    vllm_pool.close()
    return [
        (ValueError, "Pool.acquire: ", lambda: pool.acquire(101)),
        (ValueError, "Pool.try_acquire: ", lambda: pool.try_acquire(101)),
        (mmpool.PoolClosedError, "Pool.acquire: ", lambda: closed.acquire(1)),
        (mmpool.PoolClosedError, "Pool.try_acquire: ", lambda: closed.try_acquire(1)),
        (TimeoutError, "Pool.acquire: ", lambda: (pool.acquire(100), pool.acquire(1, timeout=0))),
        (ValueError, "Lease.resize: ", lambda: released.resize(5)),
        (ValueError, "Pool.resize: ", lambda: pool.resize(0)),
        (ValueError, "Pool: ", lambda: mmpool.Pool(0)),
        (ValueError, "SharedPool: ", lambda: mmpool.SharedPool("a/b", 1)),
        (ValueError, "SharedPool.acquire: ", lambda: shared.acquire(51)),
        (OSError, "SharedPool: ", lambda: mmpool.SharedPool(name, 0, create=False)),
        (OSError, "SharedPool.unlink: ", lambda: mmpool.SharedPool.unlink(name)),
        (mmpool.PoolClosedError, "MultiModalGPUMemoryPool.acquire: ", lambda: vllm_pool.acquire(1)),
        (ValueError, "init_global_pool: ", lambda: mmpool.init_global_pool(float("inf"))),
    ]


@pytest.mark.parametrize("index", range(len(failures())))
def test_messages_name_the_python_method_and_no_c_function(index):
    expected, prefix, call = failures()[index]
    kind, message = message_of(call)
    assert kind is expected, message
    assert message.startswith(prefix), message
    assert "mmpool_" not in message, message


def test_a_timeout_says_what_to_change():
    pool = mmpool.Pool(10)
    held = pool.acquire(10)
    _, message = message_of(lambda: pool.acquire(5, timeout=0.01))
    assert "5 bytes" in message and "nothing was reserved" in message and "longer timeout" in message
    held.release()
