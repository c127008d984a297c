"""`mmpool status NAME --prometheus` and `mmpool exporter`, scraped over HTTP
on 127.0.0.1 and read with prometheus_client's own parser; the families and
types are those of the Python collector."""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import mmpool
from mmpool.prometheus import PoolCollector
from test_command import BIN, command, run  # noqa: F401 (command is a fixture)

# What only a shared pool's exporter knows: per attached process, and whether
# each named pool could be read.
SHARED_ONLY = {"mmpool_pool_up", "mmpool_process_held_bytes", "mmpool_process_leases", "mmpool_process_waiters"}


def parse(text: str) -> dict:
    """{family: (type, {(sample name, frozen labels): value})}."""
    return {
        f.name: (f.type, {(s.name, frozenset(s.labels.items())): s.value for s in f.samples})
        for f in text_string_to_metric_families(text)
    }


def sample(families: dict, family: str, name: str | None = None, **labels: str) -> float:
    return families[family][1][(name or family, frozenset(labels.items()))]


def test_status_prints_the_collectors_families_with_its_figures(command, shared_name):
    pool = mmpool.SharedPool(shared_name, 4096)
    with pool.acquire(1000):
        assert pool.try_acquire(4000) is None
        result = run(command, "status", shared_name, "--prometheus")
        registry = CollectorRegistry()
        registry.register(PoolCollector(pool))
        python = parse(generate_latest(registry).decode())
    assert result.returncode == 0, result.stderr
    native = parse(result.stdout)
    assert {k: v[0] for k, v in native.items() if k not in SHARED_ONLY} == {k: v[0] for k, v in python.items()}
    for family in ("mmpool_total_bytes", "mmpool_in_use_bytes", "mmpool_available_bytes", "mmpool_waiters"):
        assert sample(native, family, pool=shared_name) == sample(python, family, pool=shared_name), family
    assert sample(native, "mmpool_in_use_bytes", pool=shared_name) == 1000
    assert sample(native, "mmpool_would_blocks", "mmpool_would_blocks_total", pool=shared_name) == 1
    assert sample(native, "mmpool_process_held_bytes", pool=shared_name, pid=str(os.getpid())) == 1000
    assert sample(native, "mmpool_pool_up", pool=shared_name) == 1
    # The histograms: the same buckets (same `le` labels), counts and sums.
    for family in ("mmpool_request_bytes", "mmpool_wait_seconds"):
        assert native[family] == python[family], family
    assert sample(native, "mmpool_request_bytes", "mmpool_request_bytes_bucket", pool=shared_name, le="4096") == 1


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_the_exporter_serves_each_pool_afresh_at_each_scrape(command, shared_name):
    pool = mmpool.SharedPool(shared_name, 1 << 20)
    missing = f"{shared_name}-missing"
    exporter = subprocess.Popen(
        [str(BIN / "mmpool"), "exporter", shared_name, missing, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = exporter.stdout.readline()
        assert "http://127.0.0.1:" in first, first + exporter.stderr.read()
        url = first.split("http://", 1)[1].split()[0]
        assert url.endswith("/metrics")
        with pool.acquire(12345):
            status, kind, text = get(f"http://{url}")
            assert status == 200 and kind.startswith("text/plain; version=0.0.4"), (status, kind)
            held = parse(text)
            assert sample(held, "mmpool_in_use_bytes", pool=shared_name) == 12345
            assert sample(held, "mmpool_process_held_bytes", pool=shared_name, pid=str(os.getpid())) == 12345
            assert sample(held, "mmpool_pool_up", pool=missing) == 0
            assert ("mmpool_in_use_bytes", frozenset({("pool", missing)})) not in held["mmpool_in_use_bytes"][1]
        released = parse(get(f"http://{url}")[2])
        assert sample(released, "mmpool_in_use_bytes", pool=shared_name) == 0
        assert sample(released, "mmpool_grants", "mmpool_grants_total", pool=shared_name) == 1
        assert get(f"http://{url.rsplit('/', 1)[0]}/nothing")[0] == 404
    finally:
        exporter.terminate()
        exporter.wait(10)


@pytest.mark.parametrize(
    "args, message",
    [(["--listen", "127.0.0.1:0"], "at least one"), (["a"], "--listen"), (["a", "--listen", "here"], "HOST:PORT")],
)
def test_the_exporter_refuses_bad_arguments(command, args, message):
    result = run(command, "exporter", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
