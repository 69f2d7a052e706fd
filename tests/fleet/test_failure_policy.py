"""The run's failure policy and busy robots, on the x86 sim robots, through `jetpolicy rollout`.

Batches are [1, 50%, 100%] of sim-orin-1 (the canary), sim-orin-2 and sim-xavier-1, so each is a
batch of its own. The injected failure is real: an opset-23 model runs on the orin robots but the
xavier robot's onnxruntime cannot load it, so its runner crashes at start and it is rolled back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fleetlib import Robot, host_verdicts, make_policy, podman_exec, release_id, rollout
from policies import write_opset23_policy

pytestmark = pytest.mark.fleet

ORINS = ("sim-orin-1", "sim-orin-2")
ROBOT_JETPOLICY = "/opt/jetpolicy/runtime/current/bin/jetpolicy"


@pytest.fixture(scope="module")
def good(fleet: dict[str, Robot], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every x86 robot on a known-good policy: the state each test starts from."""
    policy = make_policy(tmp_path_factory.mktemp("good") / "p", "--seed", "21")
    rc, out, err, _report = rollout(policy)
    assert rc == 0, out[-3000:] + err
    return policy


def _ticking_on(robot: Robot, release: str) -> None:
    """The runner itself runs `release` (not only the links say so), healthy."""
    assert robot.current() == release and robot.active() == "active"
    status = robot.status()
    assert status["state"] == "running" and status["pid"] == robot.main_pid()
    loaded: Any = status["loaded"]
    assert str(loaded["release"]).rsplit("/", 1)[-1] == release, loaded


def test_a_failure_in_the_last_batch_stops_and_keeps_the_earlier_batches(
    fleet: dict[str, Robot], good: Path, tmp_path: Path
) -> None:
    """on_failure stop (the default), budget 0: canary and second batch stay promoted, the last
    batch's robot is rolled back, and the report says the budget was spent."""
    policy = write_opset23_policy(tmp_path / "a", seed=11)
    rc, _out, err, report = rollout(policy)
    assert rc != 0 and "sim-xavier-1 rolled back" in err
    assert host_verdicts(report) == {"sim-orin-1": "promoted", "sim-orin-2": "promoted", "sim-xavier-1": "rolled_back"}
    for name in ORINS:
        _ticking_on(fleet[name], release_id(policy))
    _ticking_on(fleet["sim-xavier-1"], release_id(good))
    policy_doc = report["failure_policy"]
    assert policy_doc["spent"] is True and policy_doc["on_failure"] == "stop"
    assert policy_doc["failed_robots"] == ["sim-xavier-1"] and policy_doc["rolled_back_with_run"] == []
    assert "more than the failure budget 0 of 3" in report["reason"]


def test_rollback_all_returns_every_robot_the_run_promoted(
    fleet: dict[str, Robot], good: Path, tmp_path: Path
) -> None:
    """on_failure rollback_all: the last batch fails, and the canary and the second batch go back to
    the release, runtime and config each ran before this run (here not the fixture's good release:
    the previous test's), each listed in the report."""
    before = {name: fleet[name].snapshot() for name in ORINS}
    previous = {name: fleet[name].current() for name in ORINS}
    policy = write_opset23_policy(tmp_path / "b", seed=12)
    rc, _out, err, report = rollout(policy, "-e", "jetpolicy_on_failure=rollback_all")
    assert rc != 0 and "rollback_all" in err
    assert set(host_verdicts(report).values()) == {"rolled_back"}
    assert report["failure_policy"]["rolled_back_with_run"] == list(ORINS)
    for name in ORINS:
        robot, release = fleet[name], previous[name]
        assert release is not None
        _ticking_on(robot, release)
        assert robot.runtime() == before[name]["runtime"] and robot.config() == before[name]["config"]
        last = robot.history()[-1]
        assert last["action"] == "rollback" and str(last["reason"]).startswith("rollback_all:"), last
        entry = next(h for h in report["hosts"] if h["host"] == name)
        assert entry["rollback"]["from"] == release_id(policy) and entry["rollback"]["to"] == release
    _ticking_on(fleet["sim-xavier-1"], release_id(good))


def test_a_budget_of_one_robot_lets_the_rollout_go_on_past_a_failed_canary(
    fleet: dict[str, Robot], good: Path, tmp_path: Path
) -> None:
    """A 34 % budget of 3 robots tolerates one: the failing canary is rolled back, both later
    batches are promoted, and the run still exits non-zero naming the failed robot."""
    policy = write_opset23_policy(tmp_path / "c", seed=13)
    rc, _out, err, report = rollout(
        policy, "-e", "jetpolicy_canary=sim-xavier-1", "-e", "jetpolicy_failure_budget_percent=34"
    )
    assert rc != 0 and "sim-xavier-1 rolled back" in err
    assert host_verdicts(report) == {"sim-orin-1": "promoted", "sim-orin-2": "promoted", "sim-xavier-1": "rolled_back"}
    for name in ORINS:
        _ticking_on(fleet[name], release_id(policy))
    assert report["failure_policy"]["spent"] is False and report["failure_policy"]["budget_robots"] == 1
    assert "within the failure budget 1 of 3" in report["reason"]


def test_a_robot_on_hold_is_deferred_and_the_others_promoted(
    fleet: dict[str, Robot], good: Path, tmp_path: Path
) -> None:
    """An operator hold (`sudo jetpolicy hold`) on sim-orin-2: after the wait it keeps its release
    and its runner (same PID), reported deferred with the command that finishes it; the others are
    promoted; `jetpolicy rollout` exits 3. Released, the finishing run promotes it."""
    held = fleet["sim-orin-2"]
    release_before, pid_before = held.current(), held.main_pid()
    assert release_before is not None
    newer = make_policy(tmp_path / "newer", "--seed", "22")
    podman_exec(held.name, ROBOT_JETPOLICY, "hold", "--reason", "arm calibration")
    try:
        rc, out, err, report = rollout(newer, "-e", "policy_service_busy_wait_s=4")
    finally:
        podman_exec(held.name, ROBOT_JETPOLICY, "release-hold")
    assert rc == 3, out[-3000:] + err
    assert host_verdicts(report) == {"sim-orin-1": "promoted", "sim-orin-2": "deferred", "sim-xavier-1": "promoted"}
    assert report["ok"] is True and report["verdict"] == "partial"
    assert "operator hold" in report["reason"] and "arm calibration" in report["reason"]
    assert "ansible-playbook deploy.yml -l sim-orin-2" in report["reason"]
    _ticking_on(held, release_before)
    assert held.main_pid() == pid_before
    rc, out, err, report = rollout(newer, "--limit", "sim-orin-2")
    assert rc == 0, out[-3000:] + err
    _ticking_on(held, release_id(newer))
