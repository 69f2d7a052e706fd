"""A fake monotonic clock for the scheduler, the control loop, the runner and the bench.

Time advances only when the code under test sleeps, when a test says work happened, or by a small
cost on every read (so busy-waits end): timing assertions then hold exactly on any machine, loaded
or not, and still fail when the timing logic changes.
"""

from __future__ import annotations

from typing import Dict, List, Optional

__all__ = ["MS", "FakeClock"]

MS = 1_000_000


class FakeClock:
    """`now_ns` and `sleep_s` to inject; `stalls` maps a sleep's index to extra nanoseconds (a
    preemption while sleeping), `oversleep_ns` is added to every sleep (a late wake-up)."""

    def __init__(
        self, oversleep_ns: int = 0, read_cost_ns: int = 1_000, stalls: Optional[Dict[int, int]] = None
    ) -> None:
        self.now = 0
        self.oversleep_ns = oversleep_ns
        self.read_cost_ns = read_cost_ns
        self.stalls = dict(stalls or {})
        self.sleeps: List[int] = []

    def now_ns(self) -> int:
        self.now += self.read_cost_ns
        return self.now

    def sleep_s(self, seconds: float) -> None:
        ns = round(seconds * 1e9)
        self.now += ns + self.oversleep_ns + self.stalls.get(len(self.sleeps), 0)
        self.sleeps.append(ns)

    def work(self, ns: int) -> None:
        self.now += ns
