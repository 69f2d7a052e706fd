"""Release history and the switch under power loss: torn history lines, and what a boot between
any two steps of a switch would run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

import pytest
from release_tree import config, deploy, runtime, stage

from jetpolicy.cli import main
from jetpolicy.robot import releases
from jetpolicy.robot.releases import (
    current_deployment,
    read_history,
    rollback,
    rollback_target,
    switch_release,
)


def test_a_record_after_a_torn_line_starts_its_own_line(tmp_path: Path) -> None:
    """Power cut a write mid-line; the next switch is still recorded, the torn line is counted, and
    the rollback finds the release before."""
    for rid in "abc":
        stage(tmp_path, rid)
    deploy(tmp_path, "a")
    deploy(tmp_path, "b")
    with (tmp_path / "history.jsonl").open("a") as handle:
        handle.write('{"action": "switch", "from": "b", "to"')  # torn: no newline
    switch_release(tmp_path, "c", "deploy")
    switches = [(r["from"], r["to"]) for r in read_history(tmp_path) if r["action"] == "switch"]
    assert switches == [(None, "a"), ("a", "b"), ("b", "c")]
    assert rollback_target(tmp_path) == "b"
    assert rollback(tmp_path, "gate failed").current == "b"
    assert (tmp_path / "history.jsonl").read_bytes().endswith(b"\n")
    assert releases.read_history_counted(tmp_path)[1] == 1


def test_show_reports_unreadable_history_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`release show` says how many history lines it passed over instead of failing on them."""
    stage(tmp_path, "a")
    switch_release(tmp_path, "a", "deploy")
    with (tmp_path / "history.jsonl").open("a") as handle:
        handle.write("garbage\n[1, 2]\n")
    assert main(["release", "--root", str(tmp_path), "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["history_unreadable_lines"] == 2 and len(shown["history"]) == 1
    assert len(read_history(tmp_path)) == 1


def test_rollback_error_names_the_unreadable_lines(tmp_path: Path) -> None:
    """Nothing to roll back to, with a damaged history: the message says lines were skipped."""
    stage(tmp_path, "a")
    switch_release(tmp_path, "a", "deploy")
    with (tmp_path / "history.jsonl").open("a") as handle:
        handle.write("{torn")
    with pytest.raises(releases.JetpolicyError, match=r"1 unreadable line"):
        rollback(tmp_path, "manual")


Triple = Tuple[Optional[str], Optional[str], Optional[str]]


def service_view(root: Path) -> Triple:
    """What a runner started now would run: the three paths it reads, resolved."""

    def resolved(path: Path) -> Optional[str]:
        return os.path.realpath(path) if os.path.exists(path) else None

    paths = (root / "current", root / "runtime" / "current", root / "runner.json")
    release, venv, config_file = (resolved(path) for path in paths)
    return release, venv, config_file


def record_views(monkeypatch: pytest.MonkeyPatch, root: Path) -> List[Triple]:
    """Every state a boot could find: the service's view after each rename the switch makes."""
    views: List[Triple] = []
    real_replace: Callable[..., Any] = os.replace

    def replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        views.append(service_view(root))

    monkeypatch.setattr(releases.os, "replace", replace)
    return views


def test_a_boot_during_a_switch_runs_the_old_or_the_new_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Release, runtime and config move in one rename: no moment of the switch shows a mix."""
    stage(tmp_path, "a")
    stage(tmp_path, "b")
    r1, r2 = runtime(tmp_path, "r1"), runtime(tmp_path, "r2")
    c1, c2 = config(tmp_path, "c1.json"), config(tmp_path, "c2.json")
    switch_release(tmp_path, "a", "deploy", runtime=r1, config=c1)
    old = service_view(tmp_path)
    views = record_views(monkeypatch, tmp_path)
    switch_release(tmp_path, "b", "deploy", runtime=r2, config=c2)
    new = service_view(tmp_path)
    assert old != new and new[0] == os.path.realpath(tmp_path / "releases" / "b")
    assert set(views) <= {old, new}, views
    monkeypatch.undo()
    back = rollback(tmp_path, "gate failed")
    assert (back.current, back.runtime, back.config) == ("a", r1, c1)
    assert service_view(tmp_path) == old


def test_a_robot_from_before_deployments_is_converted_without_a_mix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three direct links (the old layout): the first switch routes them through a deployment of
    what runs now, then switches in one rename; every moment shows the old or the new triple."""
    stage(tmp_path, "a")
    stage(tmp_path, "b")
    r1, r2 = runtime(tmp_path, "r1"), runtime(tmp_path, "r2")
    c1, c2 = config(tmp_path, "c1.json"), config(tmp_path, "c2.json")
    (tmp_path / "current").symlink_to("releases/a")
    (tmp_path / "runtime" / "current").symlink_to(r1)
    (tmp_path / "runner.json").symlink_to("configs/c1.json")
    (tmp_path / "history.jsonl").write_text('{"action": "switch", "from": null, "to": "a"}\n')
    assert current_deployment(tmp_path) == releases.Deployment("a", r1, c1)
    old = service_view(tmp_path)
    views = record_views(monkeypatch, tmp_path)
    switch_release(tmp_path, "b", "deploy", runtime=r2, config=c2)
    assert set(views) <= {old, service_view(tmp_path)}, views
    assert current_deployment(tmp_path) == releases.Deployment("b", r2, c2)
    assert os.readlink(tmp_path / "current") == "deployment/release"
    # The active deployment and the one it replaced; others are rebuilt when a rollback needs them.
    active = os.readlink(tmp_path / "deployment").split("/")[-1]
    assert active in {p.name for p in (tmp_path / "deployments").iterdir()}
    assert len(list((tmp_path / "deployments").iterdir())) == 2
    monkeypatch.undo()
    assert rollback(tmp_path, "manual").current == "a"
    assert service_view(tmp_path) == old


def test_a_damaged_deployment_directory_is_rebuilt(tmp_path: Path) -> None:
    """A deployment directory missing a link (a prune cut short) is rebuilt when a rollback needs it,
    not trusted."""
    stage(tmp_path, "a")
    stage(tmp_path, "b")
    r1, r2 = runtime(tmp_path, "r1"), runtime(tmp_path, "r2")
    switch_release(tmp_path, "a", "deploy", runtime=r1, config=config(tmp_path, "c1.json"))
    old = service_view(tmp_path)
    first = tmp_path / "deployments" / os.readlink(tmp_path / "deployment").split("/")[-1]
    switch_release(tmp_path, "b", "deploy", runtime=r2, config=config(tmp_path, "c2.json"))
    (first / "runtime").unlink()
    rollback(tmp_path, "gate failed")
    assert service_view(tmp_path) == old


def test_links_an_older_runtime_moved_are_routed_again_without_a_mix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older runtime (a rollback to it, then its own switch) points the links straight at their
    targets again while <root>/deployment stays: the next switch still shows no mix."""
    for rid in "abc":
        stage(tmp_path, rid)
    r1, r2 = runtime(tmp_path, "r1"), runtime(tmp_path, "r2")
    switch_release(tmp_path, "a", "deploy", runtime=r1, config=config(tmp_path, "c1.json"))
    direct = (("current", "releases/b"), ("runtime/current", r2), ("runner.json", "configs/c1.json"))
    for link, target in direct:
        (tmp_path / link).unlink()
        (tmp_path / link).symlink_to(target)  # what the older runtime's switch leaves
    old = service_view(tmp_path)
    views = record_views(monkeypatch, tmp_path)
    switch_release(tmp_path, "c", "deploy", runtime=r1, config=config(tmp_path, "c2.json"))
    assert set(views) <= {old, service_view(tmp_path)}, views
    assert current_deployment(tmp_path) == releases.Deployment("c", r1, "c2.json")
