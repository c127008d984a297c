"""Pool figures for Prometheus, through ``prometheus_client``.

Needs ``prometheus_client`` (``pip install mmpool[prometheus]``). Register a
collector once; every scrape reads each pool's figures at that moment::

    from prometheus_client import REGISTRY
    from mmpool.prometheus import PoolCollector

    REGISTRY.register(PoolCollector({"video": pool}))   # label pool="video"

Names follow Prometheus' conventions: an ``mmpool_`` prefix, base units
(bytes, seconds), ``_total`` on counters, and a ``pool`` label naming each
pool. ``mmpool status NAME --prometheus`` and ``mmpool exporter`` print the
same families for shared pools.

Gauges: ``mmpool_total_bytes``, ``mmpool_in_use_bytes``,
``mmpool_available_bytes``, ``mmpool_peak_in_use_bytes``, ``mmpool_waiters``,
``mmpool_outstanding_leases``, ``mmpool_wait_max_seconds``.
Counters: ``mmpool_grants_total``, ``mmpool_waited_grants_total``,
``mmpool_timeouts_total``, ``mmpool_would_blocks_total``,
``mmpool_capacity_rejections_total``, ``mmpool_closed_rejections_total``.
``mmpool_wait_seconds`` is a summary (``_count`` and ``_sum``) of the waits of
the grants that waited in line.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Mapping, Tuple, Union

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "mmpool.prometheus needs prometheus_client: pip install mmpool[prometheus] (or prometheus_client)"
    ) from error

from ._pool import Pool, PoolStats, SharedPool

__all__ = ["PoolCollector", "families"]

# (name, help, the PoolStats field) for each gauge and each counter; counters
# are named without `_total`, which prometheus_client appends.
GAUGES: Tuple[Tuple[str, str, str], ...] = (
    ("mmpool_total_bytes", "The pool's total budget in bytes.", "total_bytes"),
    ("mmpool_in_use_bytes", "Bytes granted and not yet returned.", "in_use_bytes"),
    ("mmpool_available_bytes", "Bytes grantable now.", "available_bytes"),
    ("mmpool_peak_in_use_bytes", "The most bytes ever in use at once.", "peak_in_use_bytes"),
    ("mmpool_waiters", "Requests waiting in line now.", "waiters"),
    ("mmpool_outstanding_leases", "Leases granted and not yet released.", "outstanding_leases"),
)
COUNTERS: Tuple[Tuple[str, str, str], ...] = (
    ("mmpool_grants", "Leases granted.", "grants"),
    ("mmpool_waited_grants", "Grants that waited in line first.", "waited_grants"),
    ("mmpool_timeouts", "Requests that gave up when their wait ran out.", "timeouts"),
    ("mmpool_would_blocks", "try_acquire calls refused because the bytes were not free.", "would_blocks"),
    ("mmpool_capacity_rejections", "Requests refused because they exceed the total.", "capacity_rejections"),
    ("mmpool_closed_rejections", "Requests refused or woken because the pool was closed.", "closed_rejections"),
)

Pools = Union[Pool, Mapping[str, Pool], Iterable[Tuple[str, Pool]]]


def families(figures: Iterable[Tuple[str, PoolStats]]) -> Iterator[Metric]:
    """The metric families for ``(label, stats)`` pairs, one sample per pool
    in each family."""
    figures = list(figures)
    for name, text, field in GAUGES:
        family = GaugeMetricFamily(name, text, labels=["pool"])
        for label, stats in figures:
            family.add_metric([label], getattr(stats, field))
        yield family
    family = GaugeMetricFamily("mmpool_wait_max_seconds", "The longest wait of a grant, in seconds.", labels=["pool"])
    for label, stats in figures:
        family.add_metric([label], stats.wait_ns_max / 1e9)
    yield family
    for name, text, field in COUNTERS:
        family = CounterMetricFamily(name, text, labels=["pool"])
        for label, stats in figures:
            family.add_metric([label], getattr(stats, field))
        yield family
    summary = SummaryMetricFamily("mmpool_wait_seconds", "Waits of the grants that waited in line.", labels=["pool"])
    for label, stats in figures:
        summary.add_metric([label], count_value=stats.waited_grants, sum_value=stats.wait_ns_total / 1e9)
    yield summary


class PoolCollector:
    """A ``prometheus_client`` collector for one pool or several.

    ``pools`` is a pool (labelled by its name for a :class:`SharedPool`,
    ``"default"`` otherwise), a mapping from label to pool, or
    ``(label, pool)`` pairs. The collector holds a reference to each pool.
    Thread rules: ``collect`` may run on any thread, concurrently with any
    use of the pools.
    """

    def __init__(self, pools: Pools) -> None:
        if isinstance(pools, Pool):
            pools = [(pools.name if isinstance(pools, SharedPool) else "default", pools)]
        elif isinstance(pools, Mapping):
            pools = list(pools.items())
        self._pools = [(str(label), pool) for label, pool in pools]
        for label, pool in self._pools:
            if not isinstance(pool, Pool):
                raise TypeError(f"pool {label!r} is a {type(pool).__name__}, not an mmpool.Pool")
        labels = [label for label, _ in self._pools]
        if len(set(labels)) != len(labels):
            raise ValueError(f"each pool needs its own label, got {labels}")

    def collect(self) -> Iterator[Metric]:
        return families((label, pool.stats()) for label, pool in self._pools)
