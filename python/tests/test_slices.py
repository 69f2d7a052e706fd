"""Slices: the canary's slice alone and first; the others only after it succeeded."""

from __future__ import annotations

import threading
import time
from typing import List

import pytest

from jetpolicy.common.errors import JetpolicyError
from jetpolicy.controller.slices import SliceOutcome, plan_slices, run_slices

HOSTS = [f"r{i}" for i in range(1, 8)]


def test_canary_leads_the_first_slice_and_sizes_differ_by_one_at_most() -> None:
    slices = plan_slices(HOSTS, ["r5"], 3)
    assert slices[0][0] == "r5"
    assert sorted(h for s in slices for h in s) == sorted(HOSTS)
    assert sorted(len(s) for s in slices) == [2, 2, 3]


def test_more_slices_than_hosts_gives_one_host_each() -> None:
    assert plan_slices(["a", "b"], [], 5) == [["a"], ["b"]]


def test_a_canary_outside_the_limit_is_not_added() -> None:
    assert plan_slices(["a", "b"], ["zz"], 1) == [["a", "b"]]


def test_no_hosts_or_no_slices_is_an_error() -> None:
    with pytest.raises(JetpolicyError, match="no host"):
        plan_slices([], [], 2)
    with pytest.raises(JetpolicyError, match="--slices is 0"):
        plan_slices(HOSTS, [], 0)


def test_later_slices_start_only_after_the_first_and_run_side_by_side() -> None:
    events: List[str] = []
    lock = threading.Lock()
    running = {"now": 0, "max": 0}

    def run_one(index: int, hosts: List[str]) -> SliceOutcome:
        with lock:
            events.append(f"start {index}")
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        time.sleep(0.05)
        with lock:
            events.append(f"end {index}")
            running["now"] -= 1
        return SliceOutcome(index, hosts, 0, "ok")

    outcomes = run_slices(plan_slices(HOSTS, ["r1"], 3), run_one)
    assert events[:2] == ["start 0", "end 0"]
    assert running["max"] == 2
    assert [o.exit_code for o in outcomes] == [0, 0, 0]


def test_a_failed_first_slice_starts_no_other() -> None:
    started: List[int] = []

    def run_one(index: int, hosts: List[str]) -> SliceOutcome:
        started.append(index)
        return SliceOutcome(index, hosts, 1, "r1 rolled back")

    outcomes = run_slices(plan_slices(HOSTS, ["r1"], 3), run_one)
    assert started == [0]
    assert [o.exit_code for o in outcomes] == [1, 1, 1]
    assert "not started" in outcomes[1].reason
