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
Reservations (:meth:`mmpool.Pool.set_reservation`): ``mmpool_reserved_bytes``
(labels ``pool``, ``pid``, ``label``) and ``mmpool_budget_and_reserved_bytes``,
the total plus every reservation: the one figure an engine subtracts from its
KV cache.
Histograms: ``mmpool_wait_seconds``, the waits of the requests that waited in
line (buckets 1, 2, 5 per decade from 1 µs to 100 s), and
``mmpool_request_bytes``, the sizes of the granted leases (buckets the powers
of 4 from 4 KiB to 2^60 bytes).
"""

from __future__ import annotations

from typing import Iterable, Iterator, List, Mapping, Tuple, Union

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
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
    reserved = GaugeMetricFamily("mmpool_reserved_bytes", "Bytes an attached process holds outside any lease, by label.",
                                 labels=["pool", "pid", "label"])
    budget = GaugeMetricFamily("mmpool_budget_and_reserved_bytes",
                               "The pool's total budget plus every attached process's reservations, in bytes.",
                               labels=["pool"])
    for label, stats in figures:
        for pid, name, nbytes in stats.reservations:
            reserved.add_metric([label, str(pid), name], nbytes)
        budget.add_metric([label], stats.total_bytes + stats.reserved_bytes)
    yield reserved
    yield budget
    waits = HistogramMetricFamily("mmpool_wait_seconds", "Waits in line of the requests that waited before their grant.",
                                  labels=["pool"])
    sizes = HistogramMetricFamily("mmpool_request_bytes", "Sizes of the granted leases at their grant.", labels=["pool"])
    for label, stats in figures:
        waits.add_metric([label], buckets=cumulative(stats.wait_histogram, 1_000_000_000),
                         sum_value=stats.wait_ns_total / 1e9)
        sizes.add_metric([label], buckets=cumulative(stats.request_size_histogram, 1),
                         sum_value=stats.request_bytes_total)
    yield waits
    yield sizes


def le_text(bound: float, per_unit: int) -> str:
    """A bucket bound as the ``le`` label: ``+Inf``, or the bound in base
    units as a plain decimal (``0.000001``, ``4096``), exactly as ``mmpool
    status --prometheus`` writes it, so that the series of both agree."""
    if bound == float("inf"):
        return "+Inf"
    units = round(bound * per_unit)  # the bound in the library's integer units
    whole, frac = divmod(units, per_unit)
    digits = len(str(per_unit)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0").rstrip(".") if digits and frac else str(whole)


def cumulative(histogram: Tuple[Tuple[float, int], ...], per_unit: int) -> List[Tuple[str, float]]:
    """``PoolStats``' per-bucket ``(le, count)`` pairs as Prometheus' running
    sums, with ``le`` labels from :func:`le_text`."""
    out: List[Tuple[str, float]] = []
    total = 0
    for bound, count in histogram:
        total += count
        out.append((le_text(bound, per_unit), total))
    return out


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
