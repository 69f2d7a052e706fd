"""`jetpolicy busy`: an operator hold or live observations make a robot busy; nothing else does."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

from jetpolicy.cli import main
from jetpolicy.robot.busy import BUSY_EXIT_CODE, BusyReport, check_busy, wait_until_idle
from jetpolicy.robot.hold import Hold, set_hold
from jetpolicy.robot.runner import loop_metrics
from jetpolicy.robot.status import StatusWriter

NOW = 1_700_000_000.0


def write_status(path: Path, updated_at: float, last_observation_at: Any, **fields: Any) -> None:
    """A status as the runner writes it; `last_observation_at=...` (Ellipsis) leaves the field out."""
    status: Dict[str, Any] = {
        "schema_version": 1, "state": "running", "pid": 42, "rate_hz": 100.0,
        "started_at": updated_at - 60, "updated_at": updated_at, **loop_metrics(None), **fields,
    }  # fmt: skip
    if last_observation_at is not ...:
        status["last_observation_at"] = last_observation_at
    assert StatusWriter(path).write(status)


def busy(tmp_path: Path, now: float = NOW, **kwargs: Any) -> BusyReport:
    return check_busy(tmp_path / "status.json", tmp_path / "hold", now=lambda: now, **kwargs)


def test_fresh_observation_in_a_recent_status_is_busy(tmp_path: Path) -> None:
    write_status(tmp_path / "status.json", NOW - 0.2, NOW - 0.3)
    report = busy(tmp_path)
    assert report.busy and report.runner == "running" and report.hold is None
    assert report.last_observation_age_s == 0.3
    assert report.reasons == ["receiving observations: last one 0.3 s ago"]


def test_an_observation_older_than_fresh_within_is_not_busy(tmp_path: Path) -> None:
    write_status(tmp_path / "status.json", NOW - 0.2, NOW - 5.2)
    report = busy(tmp_path)
    assert not report.busy and report.runner == "running"
    assert report.last_observation_age_s == 5.2
    assert report.reasons == ["not receiving observations: last one 5.2 s ago (busy within 2 s)"]
    assert busy(tmp_path, fresh_within_s=6.0).busy  # the threshold is the caller's


def test_fresh_within_is_measured_from_the_status_not_from_now(tmp_path: Path) -> None:
    """Observations 1.5 s before a status written 3 s ago: live input as of the last write (the
    runner rewrites it every status interval), so busy while that status is not stale."""
    write_status(tmp_path / "status.json", NOW - 3.0, NOW - 4.5)
    assert busy(tmp_path).busy


@pytest.mark.parametrize("written_ago", [30.0, -30.0], ids=["old", "from-before-a-clock-step"])
def test_a_stale_status_means_no_live_loop_whatever_it_says(tmp_path: Path, written_ago: float) -> None:
    write_status(tmp_path / "status.json", NOW - written_ago, NOW - written_ago)
    report = busy(tmp_path)
    assert not report.busy and report.runner == "stopped"
    assert "stale after 10 s): the runner is not running a live loop" in report.reasons[0]
    assert busy(tmp_path, stale_after_s=60.0).busy


def test_a_missing_status_is_not_busy_and_says_why(tmp_path: Path) -> None:
    report = busy(tmp_path)
    assert not report.busy and report.runner == "stopped" and report.last_observation_age_s is None
    assert report.reasons == ["no runner status file: the runner is not running a live loop"]


@pytest.mark.parametrize(
    "last_observation_at, state, runner, reason",
    [
        pytest.param(None, "running", "running", "received no live observation since it started",
                     id="none-yet"),
        pytest.param(..., "running", "running", "older than last_observation_at", id="older-runner"),
        pytest.param(NOW - 0.1, "stopped", "stopped", "the runner's state is stopped", id="stopped"),
    ],
)
def test_a_runner_without_live_observations_is_not_busy(
    tmp_path: Path, last_observation_at: Any, state: str, runner: str, reason: str
) -> None:
    write_status(tmp_path / "status.json", NOW - 0.1, last_observation_at, state=state)
    report = busy(tmp_path)
    assert not report.busy and report.runner == runner
    assert reason in report.reasons[0]


def test_a_status_it_cannot_read_counts_as_busy(tmp_path: Path) -> None:
    """It cannot tell, so it errs toward not switching: the reason carries the reader's fix."""
    (tmp_path / "status.json").write_text("{torn")
    report = busy(tmp_path)
    assert report.busy and report.runner == "unknown"
    assert "cannot tell whether the runner receives observations" in report.reasons[0]
    assert "fix: only the runner writes it" in report.reasons[0]


def test_an_operator_hold_is_busy_and_names_who_why_since_and_the_release(tmp_path: Path) -> None:
    set_hold(tmp_path / "hold", Hold("calibrating the arm", "alice", NOW - 3600, 7))
    report = busy(tmp_path)
    assert report.busy and report.runner == "stopped"
    assert report.hold == {"schema_version": 1, "reason": "calibrating the arm", "by": "alice",
                           "since": NOW - 3600, "pid": 7}  # fmt: skip
    assert report.reasons[0] == (
        "operator hold: held by alice since 2023-11-14 21:13:20 UTC (reason: calibrating the arm); "
        "`sudo jetpolicy release-hold` clears it"
    )
    assert "no runner status file" in report.reasons[1]  # the busy sentences come first


def test_a_released_hold_no_longer_makes_it_busy(tmp_path: Path) -> None:
    set_hold(tmp_path / "hold", Hold("", "alice", NOW, 7))
    assert main(["release-hold", "--hold-file", str(tmp_path / "hold")]) == 0
    assert not busy(tmp_path).busy


def test_a_malformed_hold_file_still_counts_as_a_hold(tmp_path: Path) -> None:
    (tmp_path / "hold").write_text("held, do not touch\n")
    report = busy(tmp_path)
    assert report.busy and report.hold is None
    assert f"the hold file {tmp_path / 'hold'} is not JSON" in report.reasons[0]
    assert "counted as a hold" in report.reasons[0] and "sudo jetpolicy release-hold" in report.reasons[0]


def run_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> Tuple[int, Dict[str, Any]]:
    files = ["--status", str(tmp_path / "status.json"), "--hold-file", str(tmp_path / "hold")]
    code = main(["busy", *files, *extra])
    return code, json.loads(capsys.readouterr().out)


def test_cli_prints_one_json_object_and_exits_0_busy_or_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    write_status(tmp_path / "status.json", now, now - 0.05)
    code, report = run_cli(tmp_path, capsys)
    assert code == 0
    assert sorted(report) == ["busy", "hold", "last_observation_age_s", "reasons", "runner", "waited_s"]
    assert report["busy"] is True and report["runner"] == "running"
    code, report = run_cli(tmp_path, capsys, "--fresh-within", "0.01")
    assert (code, report["busy"]) == (0, False)


@pytest.mark.parametrize("hold, expected", [(True, BUSY_EXIT_CODE), (False, 0)])
def test_cli_exit_code_flag_exits_3_when_busy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], hold: bool, expected: int
) -> None:
    if hold:
        set_hold(tmp_path / "hold", Hold("", "alice", time.time(), 7))
    code, report = run_cli(tmp_path, capsys, "--exit-code")
    assert (code, report["busy"]) == (expected, hold)


def test_waiting_returns_as_soon_as_the_robot_is_idle() -> None:
    """`--wait`: asked again every poll until idle; the answer says how long it waited."""
    clock = [0.0]
    answers = [BusyReport(busy=True), BusyReport(busy=True), BusyReport(busy=False)]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    report = wait_until_idle(lambda: answers.pop(0), 30.0, 2.0, now=lambda: clock[0], sleep=sleep)
    assert not report.busy and report.waited_s == 4.0 and answers == []


def test_waiting_gives_up_busy_at_the_deadline_without_oversleeping() -> None:
    clock = [0.0]
    slept = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    report = wait_until_idle(lambda: BusyReport(busy=True), 5.0, 2.0, now=lambda: clock[0], sleep=sleep)
    assert report.busy and report.waited_s == 5.0
    assert slept == [2.0, 2.0, 1.0]
