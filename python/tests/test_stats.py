"""Ring buffers and loop statistics."""

from __future__ import annotations

import numpy as np
import pytest

from jetpolicy.robot.stats import LoopStats, Ring


def test_ring_keeps_only_the_last_capacity_samples() -> None:
    """After wrapping, percentiles and max come from the most recent `capacity` samples only."""
    ring = Ring(4)
    for value in (1000, 1, 2, 3, 4):
        ring.push(value)
    assert ring.count == 5
    assert sorted(ring.values().tolist()) == [1, 2, 3, 4]
    assert ring.percentiles((50,))["max"] == 4.0


def test_percentiles_match_numpy() -> None:
    """p50/p90/p99 equal numpy's linear-interpolation percentiles of the stored samples."""
    ring = Ring(1000)
    data = np.arange(1, 101) * 10
    for value in data:
        ring.push(int(value))
    result = ring.percentiles((50, 90, 99))
    assert result["p50"] == pytest.approx(np.percentile(data, 50))
    assert result["p99"] == pytest.approx(np.percentile(data, 99))
    assert result["max"] == 1000.0


def test_empty_ring_reports_zeros() -> None:
    """No samples yet: every percentile is 0 (status before the first tick)."""
    assert Ring(8).percentiles((50, 99)) == {"p50": 0.0, "p99": 0.0, "max": 0.0}


def test_push_does_not_reallocate() -> None:
    """The hot path writes into the same buffer forever."""
    ring = Ring(16)
    buffer_id = id(ring._data)
    for i in range(100):
        ring.push(i)
    assert id(ring._data) == buffer_id


def test_drift_and_jitter() -> None:
    """A loop 1 % slow reports +1 % drift; alternating periods give their standard deviation as jitter."""
    stats = LoopStats(period_ns=1_000_000)
    start = 0
    for k in range(101):
        stats.record(start, k * 1_000_000, 50_000)
        start += 1_010_000
    assert stats.drift_pct == pytest.approx(1.0)
    assert stats.jitter_ns == pytest.approx(0.0, abs=1e-6)
    summary = stats.summary_us()
    assert summary["latency_us"]["p50"] == 50.0
    # Period error grows 10 us per tick: the last is 1000 us.
    assert summary["period_error_us"]["max"] == 1000.0

    jittery = LoopStats(period_ns=1_000_000)
    start = 0
    for k in range(11):
        jittery.record(start, k * 1_000_000, 0)
        start += 900_000 if k % 2 else 1_100_000
    assert jittery.jitter_ns == pytest.approx(100_000)
