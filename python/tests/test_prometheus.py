"""mmpool.prometheus: registered in a registry, rendered, and read back with
prometheus_client's own parser."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import mmpool
from conftest import granted_after_a_wait
from mmpool.prometheus import PoolCollector


def scrape(registry: CollectorRegistry) -> dict:
    """{family name: (type, {(sample name, pool label[, le]): value})} as
    parsed (histogram buckets keyed by their ``le`` too)."""
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        out[family.name] = (
            family.type,
            {(s.name, s.labels["pool"], *([s.labels["le"]] if "le" in s.labels else [])): s.value
             for s in family.samples},
        )
    return out


def test_a_known_workload_reads_back_through_the_parser():
    video, images = mmpool.Pool(1000), mmpool.Pool(64)
    registry = CollectorRegistry()
    registry.register(PoolCollector({"video": video, "images": images}))
    held = video.acquire(300)
    assert video.try_acquire(800) is None  # a would-block
    with pytest.raises(ValueError):
        video.acquire(1001)  # a capacity rejection
    with pytest.raises(TimeoutError):
        video.acquire(800, timeout=0.01)  # a timeout
    granted_after_a_wait(images, 64).release()  # a waited grant
    got = scrape(registry)

    assert got["mmpool_total_bytes"] == ("gauge", {("mmpool_total_bytes", "video"): 1000,
                                                    ("mmpool_total_bytes", "images"): 64})
    assert got["mmpool_in_use_bytes"][1][("mmpool_in_use_bytes", "video")] == 300
    assert got["mmpool_available_bytes"][1][("mmpool_available_bytes", "video")] == 700
    assert got["mmpool_outstanding_leases"][1][("mmpool_outstanding_leases", "video")] == 1
    assert got["mmpool_waiters"][1][("mmpool_waiters", "video")] == 0
    # counters: the parser strips _total from the family and keeps it on the sample
    kind, samples = got["mmpool_would_blocks"]
    assert kind == "counter" and samples[("mmpool_would_blocks_total", "video")] == 1
    assert got["mmpool_capacity_rejections"][1][("mmpool_capacity_rejections_total", "video")] == 1
    assert got["mmpool_timeouts"][1][("mmpool_timeouts_total", "video")] == 1
    assert got["mmpool_grants"][1][("mmpool_grants_total", "video")] == 1
    assert got["mmpool_grants"][1][("mmpool_grants_total", "images")] == 2
    assert got["mmpool_waited_grants"][1][("mmpool_waited_grants_total", "images")] == 1
    assert got["mmpool_waited_grants"][1][("mmpool_waited_grants_total", "video")] == 0
    kind, samples = got["mmpool_wait_seconds"]
    stats = images.stats()
    assert kind == "histogram" and samples[("mmpool_wait_seconds_count", "images")] == 1
    assert samples[("mmpool_wait_seconds_sum", "images")] == pytest.approx(stats.wait_ns_total / 1e9)
    assert 0 < samples[("mmpool_wait_seconds_sum", "images")] < 30
    assert samples[("mmpool_wait_seconds_bucket", "images", "+Inf")] == 1
    assert samples[("mmpool_wait_seconds_bucket", "video", "+Inf")] == 0
    buckets = sorted((float(k[2]), v) for k, v in samples.items() if k[:2] == ("mmpool_wait_seconds_bucket", "images"))
    assert [le for le, _ in buckets][:3] == [1e-06, 2e-06, 5e-06] and len(buckets) == 26
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), "cumulative"
    kind, samples = got["mmpool_request_bytes"]
    assert kind == "histogram" and samples[("mmpool_request_bytes_count", "images")] == 2  # the hold and the waiter
    assert samples[("mmpool_request_bytes_sum", "images")] == 128
    assert samples[("mmpool_request_bytes_bucket", "video", "4096")] == 1
    assert samples[("mmpool_request_bytes_bucket", "video", "+Inf")] == 1
    assert samples[("mmpool_request_bytes_sum", "video")] == 300
    assert got["mmpool_wait_max_seconds"][1][("mmpool_wait_max_seconds", "images")] == pytest.approx(
        stats.wait_ns_max / 1e9)
    held.release()
    assert scrape(registry)["mmpool_in_use_bytes"][1][("mmpool_in_use_bytes", "video")] == 0  # read at each scrape


def test_every_family_is_present_with_its_type():
    registry = CollectorRegistry()
    registry.register(PoolCollector(mmpool.Pool(10)))
    kinds = {name: kind for name, (kind, _) in scrape(registry).items()}
    assert kinds == {
        **{f"mmpool_{g}": "gauge" for g in ("total_bytes", "in_use_bytes", "available_bytes",
                                            "peak_in_use_bytes", "waiters", "outstanding_leases",
                                            "wait_max_seconds")},
        **{f"mmpool_{c}": "counter" for c in ("grants", "waited_grants", "timeouts", "would_blocks",
                                              "capacity_rejections", "closed_rejections")},
        "mmpool_reserved_bytes": "gauge",
        "mmpool_budget_and_reserved_bytes": "gauge",
        "mmpool_wait_seconds": "histogram",
        "mmpool_request_bytes": "histogram",
    }
    assert all(key[1] == "default" for _, samples in scrape(registry).values() for key in samples)


def test_a_shared_pool_is_labelled_by_its_name(shared_name):
    pool = mmpool.SharedPool(shared_name, 100)
    registry = CollectorRegistry()
    registry.register(PoolCollector(pool))
    assert scrape(registry)["mmpool_total_bytes"][1] == {("mmpool_total_bytes", shared_name): 100}


def test_labels_must_differ_and_pools_must_be_pools():
    pool = mmpool.Pool(10)
    with pytest.raises(ValueError, match="own label"):
        PoolCollector([("a", pool), ("a", pool)])
    with pytest.raises(TypeError, match="not an mmpool.Pool"):
        PoolCollector({"a": 10})


def test_le_labels_are_plain_decimals_in_base_units():
    from mmpool.prometheus import le_text

    assert [le_text(b, 1_000_000_000) for b in (1e-06, 2e-05, 0.5, 100.0, float("inf"))] == [
        "0.000001", "0.00002", "0.5", "100", "+Inf"]
    assert [le_text(b, 1) for b in (4096, 2**60)] == ["4096", "1152921504606846976"]


def test_reservations_are_gauges_beside_the_budget():
    import os

    pool = mmpool.Pool(1000)
    pool.set_reservation("cuda-context", 500)
    pool.set_reservation("nvdec-surfaces", 300)
    registry = CollectorRegistry()
    registry.register(PoolCollector({"video": pool}))
    families = text_string_to_metric_families(generate_latest(registry).decode())
    got = {f.name: {tuple(sorted(s.labels.items())): s.value for s in f.samples} for f in families}
    pid = str(os.getpid())
    assert got["mmpool_reserved_bytes"] == {
        (("label", "cuda-context"), ("pid", pid), ("pool", "video")): 500,
        (("label", "nvdec-surfaces"), ("pid", pid), ("pool", "video")): 300,
    }
    assert got["mmpool_budget_and_reserved_bytes"] == {(("pool", "video"),): 1800}
