"""Ring buffers and loop statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jetpolicy.robot.stats import (
    HISTOGRAM_RATIO,
    LatencyHistogram,
    LoopStats,
    Ring,
    bucket_edges_us,
    histogram_percentiles_us,
)


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


def test_histogram_buckets_cover_1_us_to_10_s_at_5_percent() -> None:
    """333 buckets: <= 1 us, then (1.05**(i-1), 1.05**i] us up to the first edge past 10 s, then
    the overflow; a sample exactly on an edge counts in the bucket that edge closes."""
    hist = LatencyHistogram()
    assert hist.buckets == 333 and hist.counts.dtype == np.int64
    edges = bucket_edges_us(hist.first_edge_us, hist.ratio, hist.buckets)
    assert edges[-2] < 10_000_000.0 <= edges[-1]
    assert edges[100] == pytest.approx(1.05**100)
    assert hist.bucket_of(0) == 0 and hist.bucket_of(1000) == 0  # <= 1 us
    assert hist.bucket_of(1001) == 1 and hist.bucket_of(1050) == 1 and hist.bucket_of(1051) == 2
    # 180 us lies in (1.05**106, 1.05**107] = (176.6, 185.4] us.
    assert hist.bucket_of(180_000) == 107 == math.ceil(math.log(180.0) / math.log(HISTOGRAM_RATIO))
    assert hist.bucket_of(10**10) == 331  # exactly 10 s: under the last edge
    assert hist.bucket_of(11 * 10**9) == hist.buckets - 1  # overflow


def test_histogram_add_counts_in_place() -> None:
    """The tick's increment writes into the preallocated counts; the status lists only non-zero
    buckets, with the scheme beside them."""
    hist = LatencyHistogram()
    buffer = hist.counts
    for value in (180_000, 180_500, 500, 11 * 10**9):
        hist.add(value)
    assert hist.counts is buffer and hist.total == 4
    status = hist.to_status()
    assert status == {"first_edge_us": 1.0, "ratio": 1.05, "buckets": 333,
                      "counts": {"0": 1, "107": 2, "332": 1}}  # fmt: skip


def test_windowed_percentiles_from_two_histograms() -> None:
    """Between two snapshots: 90 samples of 100 us, 9 of 200 us, 1 of 1000 us. The difference is
    exactly those 100 samples, whatever came before; each percentile is its bucket's upper edge
    (at most 5 % above, never below) and max the highest non-empty bucket's."""
    hist = LatencyHistogram()
    for _ in range(5000):
        hist.add(5_000_000)  # start-up: 5 ms each, before the window
    before = {int(k): v for k, v in hist.to_status()["counts"].items()}
    for value, times in ((100_000, 90), (200_000, 9), (1_000_000, 1)):
        for _ in range(times):
            hist.add(value)
    after = {int(k): v for k, v in hist.to_status()["counts"].items()}
    delta = {i: after[i] - before.get(i, 0) for i in after if after[i] - before.get(i, 0)}
    assert sum(delta.values()) == 100
    result = histogram_percentiles_us(delta, 1.0, 1.05, 333, (50, 90, 99))
    # A sample's bucket closes at 1.05**ceil(log_1.05(v)); shown rounded up to 0.1 us.
    shown = {v: math.ceil(1.05 ** math.ceil(math.log(v, 1.05)) * 10) / 10 for v in (100.0, 200.0, 1000.0)}
    assert result == {"p50": shown[100.0], "p90": shown[100.0], "p99": shown[200.0], "max": shown[1000.0]}
    assert result == {"p50": 103.1, "p90": 103.1, "p99": 204.1, "max": 1020.7}
    for name, true_value in (("p50", 100.0), ("p99", 200.0), ("max", 1000.0)):
        assert true_value <= result[name] <= true_value * 1.05 + 0.1
    # The 91st sample is the first 200 us one: p91 moves up, p90 does not.
    assert histogram_percentiles_us(delta, 1.0, 1.05, 333, (91,))["p91"] == 204.1


def test_windowed_percentiles_of_nothing_and_of_the_overflow() -> None:
    """No samples: zeros (the window refuses that case itself). The overflow bucket has no upper
    edge: its lower one (a bound) is reported."""
    assert histogram_percentiles_us({}, 1.0, 1.05, 333, (99,)) == {"p99": 0.0, "max": 0.0}
    top = bucket_edges_us(1.0, 1.05, 333)[-1]
    assert histogram_percentiles_us({332: 1}, 1.0, 1.05, 333, (99,))["max"] == math.ceil(top * 10) / 10
