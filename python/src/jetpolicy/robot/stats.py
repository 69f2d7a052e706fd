"""Fixed-size timing statistics for the control loop.

The hot path only writes integers into preallocated numpy rings and a histogram's counts (no
allocation per tick); percentiles are computed off the hot path, over the most recent `capacity`
ticks (rings) or since the start (the histogram, whose differences give any window).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

__all__ = [
    "DEFAULT_CAPACITY",
    "HISTOGRAM_FIRST_EDGE_US",
    "HISTOGRAM_LAST_EDGE_US",
    "HISTOGRAM_RATIO",
    "LatencyHistogram",
    "LoopStats",
    "Ring",
    "bucket_edges_us",
    "histogram_percentiles_us",
]

DEFAULT_CAPACITY = 4096
# Log-spaced buckets from 1 us to 10 s, each 5 % wider than the one below: 333 int64 counts cover
# every latency a control loop can see, and a bucket's upper edge is at most 5 % above any sample
# in it. The scheme is written beside the counts in the status, so readers never assume it.
HISTOGRAM_FIRST_EDGE_US = 1.0
HISTOGRAM_RATIO = 1.05
HISTOGRAM_LAST_EDGE_US = 10_000_000.0


class Ring:
    """The last `capacity` int64 samples (nanoseconds), overwritten in place."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("ring capacity must be >= 1")
        self._data = np.zeros(capacity, dtype=np.int64)
        self._next = 0
        self.count = 0  # total samples ever pushed

    @property
    def capacity(self) -> int:
        return int(self._data.shape[0])

    def push(self, value: int) -> None:
        self._data[self._next] = value
        self._next += 1
        if self._next == self._data.shape[0]:
            self._next = 0
        self.count += 1

    def values(self) -> np.ndarray:
        """The stored samples (unordered copy); allocates, so call it off the hot path."""
        data: np.ndarray = self._data[: min(self.count, self.capacity)].copy()
        return data

    def percentiles(self, quantiles: Sequence[float]) -> Dict[str, float]:
        """Nearest-rank-interpolated percentiles in nanoseconds, keyed "p50", "p99", ... plus "max"."""
        data = self.values()
        if data.size == 0:
            result = {f"p{q:g}": 0.0 for q in quantiles}
            result["max"] = 0.0
            return result
        values = np.percentile(data, list(quantiles))
        result = {f"p{q:g}": float(v) for q, v in zip(quantiles, values)}
        result["max"] = float(data.max())
        return result

    def std(self) -> float:
        data = self.values()
        return float(data.std()) if data.size else 0.0


class LoopStats:
    """Per-tick latency, period error (start - ideal start) and actual period (start - previous start)."""

    def __init__(self, period_ns: int, capacity: int = DEFAULT_CAPACITY) -> None:
        self.period_ns = period_ns
        self.latency = Ring(capacity)
        self.period_error = Ring(capacity)
        self.period = Ring(capacity)
        self.first_start_ns = 0
        self.last_start_ns = 0
        self.ticks = 0

    def record(self, start_ns: int, release_ns: int, latency_ns: int) -> None:
        if self.ticks == 0:
            self.first_start_ns = start_ns
        else:
            self.period.push(start_ns - self.last_start_ns)
        self.last_start_ns = start_ns
        self.period_error.push(start_ns - release_ns)
        self.latency.push(latency_ns)
        self.ticks += 1

    @property
    def mean_period_ns(self) -> float:
        if self.ticks < 2:
            return float(self.period_ns)
        return (self.last_start_ns - self.first_start_ns) / (self.ticks - 1)

    @property
    def drift_pct(self) -> float:
        """Mean actual period over the whole run versus nominal, in percent (skipped periods count)."""
        return (self.mean_period_ns - self.period_ns) / self.period_ns * 100.0

    @property
    def jitter_ns(self) -> float:
        """Standard deviation of the actual period over the ring window."""
        return self.period.std()

    def summary_us(self) -> Dict[str, Dict[str, float]]:
        """Latency and period-error percentiles in microseconds (rounded to 0.1 us)."""
        lat = self.latency.percentiles((50, 90, 99))
        err = self.period_error.percentiles((50, 99))
        return {
            "latency_us": {k: round(v / 1000.0, 1) for k, v in lat.items()},
            "period_error_us": {k: round(v / 1000.0, 1) for k, v in err.items()},
        }


def bucket_edges_us(first_edge_us: float, ratio: float, buckets: int) -> List[float]:
    """Upper edges of buckets 0 .. buckets-2: edge i = first_edge_us * ratio**i.

    Bucket 0 holds every sample <= first_edge_us, bucket i (0 < i < buckets-1) the samples in
    (edge i-1, edge i], and the last bucket (buckets-1) every sample above edge buckets-2: it has
    no upper edge. Each edge is computed from the scheme, never accumulated, so a reader of the
    status gets exactly the edges the runner counted with."""
    return [first_edge_us * ratio**i for i in range(buckets - 1)]


class LatencyHistogram:
    """Cumulative counts of latencies in fixed log-spaced buckets (`bucket_edges_us`).

    `add` is the hot path: one bisect over a list of float edges and an in-place increment of a
    preallocated int64 array. Counts only grow, so two snapshots of the status give the
    distribution between them, however long the runner ran before."""

    def __init__(
        self,
        first_edge_us: float = HISTOGRAM_FIRST_EDGE_US,
        ratio: float = HISTOGRAM_RATIO,
        last_edge_us: float = HISTOGRAM_LAST_EDGE_US,
    ) -> None:
        if not (first_edge_us > 0 and ratio > 1 and last_edge_us > first_edge_us):
            raise ValueError("histogram needs first_edge_us > 0, ratio > 1 and last_edge_us > first_edge_us")
        self.first_edge_us = first_edge_us
        self.ratio = ratio
        # Edges up to the first one at or past last_edge_us, plus the overflow bucket above it.
        top = math.ceil(math.log(last_edge_us / first_edge_us) / math.log(ratio) - 1e-9)
        self.buckets = top + 2
        edges_us = bucket_edges_us(first_edge_us, ratio, self.buckets)
        # Nanosecond edges: the loop's samples are integer ns, compared without a division.
        self._edges_ns = [edge * 1000.0 for edge in edges_us]
        self.counts = np.zeros(self.buckets, dtype=np.int64)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def bucket_of(self, value_ns: int) -> int:
        """The bucket a sample in nanoseconds falls in (the last one above every edge)."""
        return bisect_left(self._edges_ns, value_ns)

    def add(self, value_ns: int) -> None:
        self.counts[bisect_left(self._edges_ns, value_ns)] += 1

    def to_status(self) -> Dict[str, Any]:
        """The scheme and the non-zero counts keyed by bucket index (a string: JSON object keys)."""
        nonzero = np.flatnonzero(self.counts)
        return {
            "first_edge_us": self.first_edge_us,
            "ratio": self.ratio,
            "buckets": self.buckets,
            "counts": {str(int(i)): int(self.counts[i]) for i in nonzero},
        }


def histogram_percentiles_us(
    counts: Mapping[int, int], first_edge_us: float, ratio: float, buckets: int, quantiles: Sequence[float]
) -> Dict[str, float]:
    """Nearest-rank percentiles of bucketed samples, each reported as its bucket's upper edge
    (rounded up to 0.1 us), so the estimate is never below the true value; "max" likewise for the
    highest non-empty bucket. A percentile in the overflow bucket (no upper edge) is reported as
    that bucket's lower edge: at least that, and the caller says how many samples overflowed."""
    edges = bucket_edges_us(first_edge_us, ratio, buckets)
    total = sum(counts.values())
    result: Dict[str, float] = {}
    if total <= 0:
        result.update({f"p{q:g}": 0.0 for q in quantiles})
        result["max"] = 0.0
        return result

    def edge(index: int) -> float:
        value = edges[min(index, len(edges) - 1)]
        return math.ceil(round(value * 10.0, 6)) / 10.0

    ordered = sorted((i, n) for i, n in counts.items() if n > 0)
    for q in quantiles:
        rank = max(1, math.ceil(q / 100.0 * total - 1e-9))
        seen = 0
        for index, count in ordered:
            seen += count
            if seen >= rank:
                result[f"p{q:g}"] = edge(index)
                break
    result["max"] = edge(ordered[-1][0])
    return result
