"""jetpolicy_rollout_lock: one rollout per robot, stale and dead holders, release only one's own."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from ansible.module_utils.jetpolicy_rollout_lock import read_holder, release, try_acquire
from moduletest import load_module

jetpolicy_rollout_lock = load_module("jetpolicy_rollout_lock")
STALE_S = 600


def record(owner: str) -> dict:
    return {"owner": owner, "controller": "ctl-a", "controller_pid": 4242}


def test_the_first_run_takes_the_lock_and_a_second_finds_it_held(tmp_path: Path) -> None:
    lock = str(tmp_path / "rollout.lock")
    first = try_acquire(lock, record("run-a"), 1000.0, STALE_S)
    second = try_acquire(lock, record("run-b"), 1001.0, STALE_S)
    assert first["acquired"] and not first["refreshed"]
    assert not second["acquired"]
    assert second["held_by"]["owner"] == "run-a"
    assert read_holder(lock)["owner"] == "run-a"


def test_the_holder_refreshes_and_staleness_counts_from_the_refresh(tmp_path: Path) -> None:
    lock = str(tmp_path / "rollout.lock")
    try_acquire(lock, record("run-a"), 1000.0, STALE_S)
    os.utime(lock, (1000.0, 1000.0))
    again = try_acquire(lock, record("run-a"), 1500.0, STALE_S)
    assert again["acquired"] and again["refreshed"]
    os.utime(lock, (1500.0, 1500.0))
    assert not try_acquire(lock, record("run-b"), 1500.0 + STALE_S - 1, STALE_S)["acquired"]
    taken = try_acquire(lock, record("run-b"), 1500.0 + STALE_S + 1, STALE_S)
    assert taken["acquired"]
    assert taken["taken_over"]["owner"] == "run-a"
    assert taken["why"].startswith("stale")
    assert read_holder(lock)["owner"] == "run-b"


def test_a_dead_holder_is_replaced_only_when_named_exactly(tmp_path: Path) -> None:
    lock = str(tmp_path / "rollout.lock")
    now = time.time()
    try_acquire(lock, record("run-a"), now, STALE_S)
    assert not try_acquire(lock, record("run-c"), now, STALE_S, break_owner="run-b")["acquired"]
    taken = try_acquire(lock, record("run-c"), now, STALE_S, break_owner="run-a")
    assert taken["acquired"] and taken["why"] == "its controller process is gone"
    assert read_holder(lock)["owner"] == "run-c"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rollout.lock"]


def test_force_replaces_any_holder(tmp_path: Path) -> None:
    lock = str(tmp_path / "rollout.lock")
    now = time.time()
    try_acquire(lock, record("run-a"), now, STALE_S)
    taken = try_acquire(lock, record("run-b"), now, STALE_S, force=True)
    assert taken["acquired"] and taken["taken_over"]["owner"] == "run-a"


def test_release_removes_only_the_callers_lock(tmp_path: Path) -> None:
    lock = str(tmp_path / "rollout.lock")
    try_acquire(lock, record("run-a"), time.time(), STALE_S)
    released, holder = release(lock, "run-b")
    assert not released and holder["owner"] == "run-a"
    assert os.path.exists(lock)
    released, holder = release(lock, "run-a")
    assert released and not os.path.exists(lock)
    assert release(lock, "run-a") == (False, None)


def test_an_unreadable_lock_is_held_until_stale(tmp_path: Path) -> None:
    lock = tmp_path / "rollout.lock"
    lock.write_bytes(b"\x00garbage")
    os.utime(lock, (1000.0, 1000.0))
    held = try_acquire(str(lock), record("run-b"), 1010.0, STALE_S)
    assert not held["acquired"] and held["held_by"]["owner"] == "unreadable"
    assert try_acquire(str(lock), record("run-b"), 1000.0 + STALE_S + 5, STALE_S)["acquired"]


def test_of_many_runs_racing_exactly_one_takes_the_lock(tmp_path: Path) -> None:
    lock = str(tmp_path / "rollout.lock")
    winners: list[str] = []
    start = threading.Barrier(8)

    def contend(owner: str) -> None:
        start.wait()
        if try_acquire(lock, record(owner), time.time(), STALE_S)["acquired"]:
            winners.append(owner)

    threads = [threading.Thread(target=contend, args=(f"run-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert read_holder(lock)["owner"] == winners[0]


def test_the_module_waits_then_fails_naming_the_holder(run_module, tmp_path: Path) -> None:
    lock = tmp_path / "root" / "rollout.lock"
    taken = run_module(jetpolicy_rollout_lock, dict(path=str(lock), owner="run-a", controller="ctl-a",
                                                    controller_pid=111))
    assert taken["acquired"] and not taken["changed"]
    started = time.monotonic()
    refused = run_module(jetpolicy_rollout_lock, dict(path=str(lock), owner="run-b", wait_s=2))
    assert time.monotonic() - started >= 2
    assert refused["failed"] and not refused["acquired"]
    assert "run run-a from controller ctl-a (pid 111)" in refused["msg"]
    assert "jetpolicy_lock_force=true" in refused["msg"]
    assert refused["held_by"]["owner"] == "run-a"


def test_the_module_gets_the_lock_once_the_holder_lets_go(run_module, tmp_path: Path) -> None:
    lock = tmp_path / "rollout.lock"
    run_module(jetpolicy_rollout_lock, dict(path=str(lock), owner="run-a"))
    timer = threading.Timer(1.0, lambda: release(str(lock), "run-a"))
    timer.start()
    try:
        taken = run_module(jetpolicy_rollout_lock, dict(path=str(lock), owner="run-b", wait_s=10))
    finally:
        timer.join()
    assert taken["acquired"] and 0.5 < taken["waited_s"] < 10
    assert json.loads(lock.read_text())["owner"] == "run-b"


def test_check_mode_writes_nothing_and_warns_of_a_holder(run_module, tmp_path: Path) -> None:
    lock = tmp_path / "rollout.lock"
    result = run_module(jetpolicy_rollout_lock, dict(path=str(lock), owner="run-a"), check_mode=True)
    assert result["acquired"] and not lock.exists()
    run_module(jetpolicy_rollout_lock, dict(path=str(lock), owner="run-a"))
    held = run_module(jetpolicy_rollout_lock, dict(path=str(lock), owner="run-b"), check_mode=True)
    assert not held["acquired"] and not held.get("failed")
    assert held["held_by"]["owner"] == "run-a"


def test_the_module_releases_its_own_lock_only(run_module, tmp_path: Path) -> None:
    lock = tmp_path / "rollout.lock"
    run_module(jetpolicy_rollout_lock, dict(path=str(lock), owner="run-a"))
    other = run_module(jetpolicy_rollout_lock, dict(path=str(lock), owner="run-b", state="absent"))
    assert not other["released"] and lock.exists()
    mine = run_module(jetpolicy_rollout_lock, dict(path=str(lock), owner="run-a", state="absent"))
    assert mine["released"] and not lock.exists() and not mine["changed"]
