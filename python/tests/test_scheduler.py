"""DeadlineScheduler logic, driven by a fake clock (no real sleeping)."""

from __future__ import annotations

import pytest
from fakeclock import MS, FakeClock

from jetpolicy.common.errors import ConfigError
from jetpolicy.robot.scheduler import DeadlineScheduler


def make(clock: FakeClock, period_ms: float = 1.0, spin_us: float = 200.0) -> DeadlineScheduler:
    sched = DeadlineScheduler(period_ms * 1e-3, spin_us * 1e-6, now_ns=clock.now_ns, sleep_s=clock.sleep_s)
    sched.start(first_release_ns=10 * MS)
    return sched


def test_releases_stay_on_absolute_grid_despite_oversleep() -> None:
    """Sleep overshoot smaller than the spin never shifts the grid: tick k starts at t0 + k*period."""
    clock = FakeClock(oversleep_ns=150_000)
    sched = make(clock)
    for k in range(50):
        timing = sched.wait()
        assert timing.release_ns == 10 * MS + k * MS
        assert 0 <= timing.period_error_ns <= clock.read_cost_ns
        clock.work(300_000)
        sched.end_tick()
    assert sched.overruns == 0 and sched.deadline_misses == 0 and sched.skipped_periods == 0


def test_sleeps_until_release_minus_spin() -> None:
    """The sleep ends `spin` before the release; the remainder is busy-waited."""
    clock = FakeClock()
    sched = make(clock, spin_us=200)
    sched.wait()
    assert clock.sleeps, "expected a sleep before the first release"
    # The sleep was requested to end 200 us before the 10 ms release (within one clock read).
    assert abs((clock.sleeps[0] + clock.read_cost_ns) - (10 * MS - 200_000)) <= 2 * clock.read_cost_ns


def test_overrun_skips_to_next_future_deadline_without_burst() -> None:
    """A 3.5-period tick: its miss is counted, 3 releases are skipped, and the next tick is not a burst."""
    clock = FakeClock()
    sched = make(clock)
    first_release = sched.wait().release_ns  # the timing object is reused: keep values, not it
    clock.work(3 * MS + 500_000)
    end = sched.end_tick()
    assert end.missed
    assert sched.deadline_misses == 1
    second = sched.wait()
    # The work ended at ~13.5 ms: releases 11 and 12 ms have deadlines in the past and are skipped;
    # release 13 ms owns the next future deadline (14 ms), so it runs at once, late.
    assert second.release_ns == first_release + 3 * MS
    assert second.skipped == 2
    assert sched.skipped_periods == 2
    assert sched.overruns == 1
    assert second.start_ns > second.release_ns  # it starts late, once
    second_release = second.release_ns
    clock.work(100_000)
    sched.end_tick()
    third = sched.wait()
    # No catch-up burst: the next tick waits for its own release on the grid.
    assert third.release_ns == second_release + MS
    assert third.start_ns >= third.release_ns
    assert sched.ticks == 3


def test_late_wakeup_past_deadline_is_skipped() -> None:
    """Preempted during the sleep past the release's deadline: that release is skipped, not run late."""
    clock = FakeClock(oversleep_ns=2 * MS + 300_000)
    sched = make(clock)
    timing = sched.wait()
    assert timing.skipped == 2
    assert timing.release_ns == 12 * MS
    assert timing.start_ns < timing.deadline_ns
    assert sched.overruns == 1


def test_miss_is_measured_against_absolute_deadline() -> None:
    """A tick that starts late and ends after release + period counts as a miss even if its work was short."""
    clock = FakeClock()
    sched = make(clock)
    sched.wait()
    clock.work(900_000)
    assert not sched.end_tick().missed
    sched.wait()
    clock.work(1_100_000)
    assert sched.end_tick().missed
    assert sched.deadline_misses == 1
    assert sched.deadline_miss_rate == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("period", "spin", "policy"), [(0.0, 0.0, "skip"), (1e-3, 2e-3, "skip"), (1e-3, 0.0, "burst")]
)
def test_invalid_settings_raise_config_error(period: float, spin: float, policy: str) -> None:
    """Zero period, spin >= period and unknown overrun policies are rejected with a ConfigError."""
    with pytest.raises(ConfigError):
        DeadlineScheduler(period, spin, overrun_policy=policy)


def test_integer_grid_does_not_drift_over_many_ticks() -> None:
    """1000 releases at 1/3 ms land exactly on k * period_ns (integer grid, period rounded once)."""
    clock = FakeClock(read_cost_ns=0)
    sched = DeadlineScheduler(1 / 3000, 0.0, now_ns=clock.now_ns, sleep_s=clock.sleep_s)
    sched.start(first_release_ns=0)
    assert sched.period_ns == 333_333
    for _ in range(1000):
        sched.wait()
        sched.end_tick()
    assert sched.next_release_ns == 1000 * 333_333
