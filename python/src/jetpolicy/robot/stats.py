"""Fixed-size timing statistics for the control loop.

The hot path only writes integers into preallocated numpy rings (no allocation per tick);
percentiles are computed off the hot path, over the most recent `capacity` ticks.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

__all__ = ["DEFAULT_CAPACITY", "LoopStats", "Ring"]

DEFAULT_CAPACITY = 4096


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
