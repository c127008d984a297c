"""Split, merge and hand-offs from Python: Lease.split/merge/share,
Pool.claim/complete/wait_handoff, tokens as picklable bytes."""

from __future__ import annotations

import pickle
import threading

import pytest

import mmpool


def test_split_gives_a_new_lease_and_merge_takes_one_back():
    pool = mmpool.Pool(100)
    lease = pool.acquire(100)
    part = lease.split(30)
    assert isinstance(part, mmpool.Lease)
    assert (lease.nbytes, part.nbytes, pool.available_bytes) == (70, 30, 0)
    assert pool.try_acquire(1) is None, "a split frees nothing"
    part.release()
    assert pool.available_bytes == 30
    other = pool.acquire(30)
    lease.merge(other)
    assert (lease.nbytes, other.released, pool.stats().outstanding_leases) == (100, True, 1)
    other.release()  # merged away: nothing to give back
    assert pool.available_bytes == 0
    lease.release()
    assert pool.available_bytes == 100


def test_split_and_merge_misuse_raises_and_changes_nothing():
    pool, elsewhere = mmpool.Pool(100), mmpool.Pool(100)
    lease = pool.acquire(10)
    with pytest.raises(ValueError, match="Lease.split"):
        lease.split(0)
    with pytest.raises(ValueError, match="Lease.split"):
        lease.split(10)
    with pytest.raises(ValueError, match="with itself"):
        lease.merge(lease)
    foreign = elsewhere.acquire(5)
    with pytest.raises(ValueError, match="not issued by this pool"):
        lease.merge(foreign)
    with pytest.raises(TypeError):
        lease.merge(5)
    gone = pool.acquire(1)
    gone.release()
    with pytest.raises(ValueError, match="already released"):
        lease.merge(gone)
    assert (lease.nbytes, foreign.released, pool.available_bytes, elsewhere.available_bytes) == (10, False, 90, 95)


def test_a_token_pickles_and_the_last_completion_returns_the_bytes():
    pool = mmpool.Pool(100)
    lease = pool.acquire(60)
    token = lease.share(parts=3, claim_deadline=600)
    assert isinstance(token, bytes) and len(token) == 32
    assert pickle.loads(pickle.dumps(token)) == token
    assert lease.detached and pool.available_bytes == 40
    lease.release()  # the hand-off holds the bytes, not the lease
    with pool.claim(token, 0) as claimed:
        assert not claimed.completed
    pool.complete(token, 1)
    pool.complete(token, 1)
    assert pool.available_bytes == 40
    with pytest.raises(TimeoutError):
        pool.wait_handoff(token, timeout=0)
    pool.complete(token, 2)
    assert pool.available_bytes == 100
    pool.wait_handoff(token)
    s = pool.handoff_stats()
    assert (s.outstanding, s.finished, s.expired_parts) == (0, 1, 0)


def test_forged_tokens_and_parts_out_of_range_are_refused():
    pool = mmpool.Pool(10)
    token = pool.acquire(5).share(parts=2)
    altered = []
    for at in (8, 16, 20, 24):  # nonce, parts, flags, offset
        forged = bytearray(token)
        forged[at] ^= 1
        altered.append(bytes(forged))
    for bad in (*altered, mmpool.Pool(10).acquire(1).share(parts=2)):
        with pytest.raises(ValueError, match="not issued by this pool"):
            pool.complete(bad, 0)
    with pytest.raises(ValueError, match="out of range"):
        pool.complete(token, 2)
    with pytest.raises(ValueError, match="32 bytes"):
        pool.complete(b"short", 0)
    with pytest.raises(ValueError, match="1 to 64 parts"):
        pool.acquire(1).share(parts=0)
    assert pool.handoff_stats().outstanding == 1


def test_consumer_threads_complete_while_the_producer_waits_then_releases():
    pool = mmpool.Pool(64)
    lease = pool.acquire(64)
    token = lease.share(parts=4, keep_lease=True)

    def consume(part: int) -> None:
        with pool.claim(token, part):
            pass

    threads = [threading.Thread(target=consume, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    pool.wait_handoff(token)
    for t in threads:
        t.join()
    assert pool.available_bytes == 0, "the producer kept its lease"
    lease.release()
    assert pool.available_bytes == 64


def test_unclaimed_parts_expire_at_the_claim_deadline():
    pool = mmpool.Pool(10)
    token = pool.acquire(10).share(parts=2, claim_deadline=0)
    pool.wait_handoff(token)
    assert pool.available_bytes == 10
    assert pool.handoff_stats().expired_parts == 2
