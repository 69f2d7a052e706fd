"""Pending vs committed switches, the runner's own word on what it loaded, and boot recovery."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import pytest
from release_tree import deploy, stage

from jetpolicy.cli import main
from jetpolicy.robot.deployment_state import Deployment, running_deployment
from jetpolicy.robot.health import judge
from jetpolicy.robot.releases import (
    commit,
    current_release,
    read_history,
    recover,
    rollback_target,
    switch_release,
)
from jetpolicy.robot.robot_status import robot_status
from jetpolicy.robot.runner import loaded_deployment


def write_status(path: Path, release: Optional[str], pid: Optional[int] = None, age_s: float = 0.0) -> Path:
    status: Dict[str, Any] = {
        "state": "running", "pid": pid or os.getpid(), "rate_hz": 50.0, "ticks": 10,
        "updated_at": time.time() - age_s,
    }  # fmt: skip
    if release:
        status["loaded"] = {"release": release, "runtime": None, "config": None}
    path.write_text(json.dumps(status))
    return path


def test_rerun_of_a_committed_running_release_is_unchanged(tmp_path: Path) -> None:
    stage(tmp_path, "a")
    deploy(tmp_path, "a")
    running = running_deployment(write_status(tmp_path / "s.json", "a"), os.getpid())
    result = switch_release(tmp_path, "a", "deploy", running=running)
    assert not result.changed and result.why == ""


def test_links_at_target_but_runner_runs_the_old_release(tmp_path: Path) -> None:
    """The fault: controller killed right after the switch; the runner was never restarted."""
    for rid in "ab":
        stage(tmp_path, rid)
    deploy(tmp_path, "a")
    switch_release(tmp_path, "b", "deploy")
    running = running_deployment(write_status(tmp_path / "s.json", "a"), os.getpid())
    result = switch_release(tmp_path, "b", "deploy", running=running)
    assert result.changed
    assert "links at b but the runner runs a" in result.why
    assert "switch to b never committed" in result.why
    assert [r["action"] for r in read_history(tmp_path)].count("switch") == 2  # no new record


def test_runner_restarted_on_target_but_not_committed(tmp_path: Path) -> None:
    for rid in "ab":
        stage(tmp_path, rid)
    deploy(tmp_path, "a")
    switch_release(tmp_path, "b", "deploy")
    running = running_deployment(write_status(tmp_path / "s.json", "b"), os.getpid())
    result = switch_release(tmp_path, "b", "deploy", running=running)
    assert result.changed and result.why == "switch to b never committed"
    assert commit(tmp_path, "gate passed", "b").changed
    assert not commit(tmp_path, "gate passed", "b").changed  # once
    assert not switch_release(tmp_path, "b", "deploy", running=running).changed
    last = read_history(tmp_path)[-1]
    assert (last["action"], last["from"], last["to"]) == ("commit", "a", "b")


@pytest.mark.parametrize(
    ("pid", "age_s", "release", "why"),
    [
        (0, 0.0, "a", "no main process"),
        (1, 0.0, "a", "unit's main pid is 1"),
        (None, 120.0, "a", "last written"),
        (None, 0.0, None, "does not say what it loaded"),
    ],
)
def test_a_runner_that_cannot_vouch_makes_it_a_switch(
    tmp_path: Path, pid: Optional[int], age_s: float, release: Optional[str], why: str
) -> None:
    stage(tmp_path, "a")
    deploy(tmp_path, "a")
    running = running_deployment(write_status(tmp_path / "s.json", release, age_s=age_s), pid)
    result = switch_release(tmp_path, "a", "deploy", running=running)
    assert result.changed and why in result.why


def test_first_deploy_without_a_runner_is_a_switch(tmp_path: Path) -> None:
    stage(tmp_path, "a")
    running = running_deployment(tmp_path / "absent.json", 0)
    assert running[0] is None and "not running" in running[1]
    result = switch_release(tmp_path, "a", "deploy", running=running)
    assert result.changed and result.why == ""
    assert read_history(tmp_path)[-1]["pending"] is True


def test_commit_refuses_a_release_the_links_do_not_select(tmp_path: Path) -> None:
    for rid in "ab":
        stage(tmp_path, rid)
    switch_release(tmp_path, "a", "deploy")
    with pytest.raises(Exception, match="the links select a"):
        commit(tmp_path, "gate passed", "b")


def test_history_from_before_commits_reads_as_committed(tmp_path: Path) -> None:
    """Robots in service have switch records without `pending`: not all half-deployed."""
    for rid in "ab":
        stage(tmp_path, rid)
    switch_release(tmp_path, "a", "deploy")
    switch_release(tmp_path, "b", "deploy")
    old = [{k: v for k, v in r.items() if k not in ("pending", "boot_id")} for r in read_history(tmp_path)]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    assert not switch_release(tmp_path, "b", "deploy").changed
    assert rollback_target(tmp_path) == "a"
    assert not recover(tmp_path, boot="another boot").changed


def test_rollback_skips_switches_never_committed(tmp_path: Path) -> None:
    for rid in "abc":
        stage(tmp_path, rid)
    deploy(tmp_path, "a")
    switch_release(tmp_path, "b", "deploy")  # cut off before its gate
    switch_release(tmp_path, "c", "deploy")
    assert rollback_target(tmp_path) == "a"


def test_boot_with_a_pending_switch_starts_the_last_committed(tmp_path: Path) -> None:
    for rid in "ab":
        stage(tmp_path, rid)
    deploy(tmp_path, "a")
    switch_release(tmp_path, "b", "deploy")
    switched_in = read_history(tmp_path)[-1]["boot_id"]
    # A restart in the switch's own boot (the deploy's) keeps it.
    assert not recover(tmp_path, boot=switched_in).changed and current_release(tmp_path) == "b"
    result = recover(tmp_path, boot="a later boot")
    assert result.changed and result.action == "recover" and current_release(tmp_path) == "a"
    assert read_history(tmp_path)[-1]["action"] == "recover"
    assert not recover(tmp_path, boot="a later boot").changed  # a second start: nothing to do


def test_recovery_keeps_a_committed_switch_and_a_first_deploy(tmp_path: Path) -> None:
    stage(tmp_path, "a")
    switch_release(tmp_path, "a", "deploy")
    assert "no committed deployment" in recover(tmp_path, boot="later").notes
    assert current_release(tmp_path) == "a"
    commit(tmp_path, "gate passed")
    assert not recover(tmp_path, boot="later").changed


def test_a_torn_line_after_a_pending_switch_still_recovers(tmp_path: Path) -> None:
    for rid in "ab":
        stage(tmp_path, rid)
    deploy(tmp_path, "a")
    switch_release(tmp_path, "b", "deploy")
    with (tmp_path / "history.jsonl").open("a") as handle:
        handle.write('{"action": "commit", "from": "a", "to"')  # the commit torn by power loss
    assert recover(tmp_path, boot="later").current == "a"


def test_runner_names_what_it_loaded(tmp_path: Path) -> None:
    release = tmp_path / "releases" / "r1"
    release.mkdir(parents=True)
    (tmp_path / "current").symlink_to("releases/r1")
    loaded = loaded_deployment(tmp_path / "current", tmp_path / "cfg.json")
    assert loaded == {"release": "r1", "runtime": os.path.realpath(sys.prefix), "config": "cfg.json"}


def test_health_fails_when_the_runner_loaded_another_release() -> None:
    first = {"state": "running", "pid": 5, "rate_hz": 10.0, "ticks": 0, "updated_at": 1.0,
             "loaded": {"release": "old"}}  # fmt: skip
    second = dict(first, ticks=10, updated_at=2.0)
    report = judge(first, second, 1.0, 0.5, 5, expected_release="new")
    assert not report.healthy and "loaded release old, not new" in report.reasons[0]
    assert judge(first, second, 1.0, 0.5, 5, expected_release="old").healthy
    # A runner older than `loaded` is judged by its release path.
    legacy = {k: v for k, v in second.items() if k != "loaded"}
    assert judge(first, dict(legacy, release="/opt/jetpolicy/releases/old"), 1.0, 0.5, 5, "old").healthy


def test_status_command_says_what_disagrees(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for rid in "ab":
        stage(tmp_path, rid)
    deploy(tmp_path, "a")
    status = write_status(tmp_path / "s.json", "a")
    assert robot_status(tmp_path, status, os.getpid())["agree"]
    switch_release(tmp_path, "b", "deploy")
    argv = ["status", "--root", str(tmp_path), "--status", str(status), "--pid", str(os.getpid())]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    shown = json.loads(out)
    assert shown["links"]["release"] == "b" and shown["loaded"]["release"] == "a"
    assert not shown["committed"] and shown["last_history"]["to"] == "b"
    assert "the runner runs a" in err


def test_running_deployment_compares_runtimes_resolved(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    (tmp_path / "link").symlink_to(venv)
    status = write_status(tmp_path / "s.json", "a")
    data = json.loads(status.read_text())
    data["loaded"]["runtime"] = str(venv)
    status.write_text(json.dumps(data))
    loaded, _ = running_deployment(status, os.getpid())
    from jetpolicy.robot.deployment_state import same_deployment

    assert loaded is not None and same_deployment(loaded, Deployment("a", str(tmp_path / "link")))
