"""Release switching on the robot: atomic `current`, history, and rollback targets."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import List, Optional, Tuple

import pytest
from release_tree import config, deploy, runtime, stage

from jetpolicy.cli import main
from jetpolicy.common.errors import ConfigError, JetpolicyError
from jetpolicy.robot.releases import (
    UNLINKED_ENGINE_GRACE_S,
    Deployment,
    current_deployment,
    current_release,
    prune_engines,
    prune_releases,
    read_history,
    releases_to_prune,
    rollback,
    rollback_target,
    switch_release,
)


def test_switch_points_current_and_records_history(tmp_path: Path) -> None:
    """The first switch creates `current`; the next one records where it came from."""
    stage(tmp_path, "a")
    stage(tmp_path, "b")
    first = switch_release(tmp_path, "a", "deploy")
    assert first.changed and first.previous is None and current_release(tmp_path) == "a"
    second = switch_release(tmp_path, "b", "deploy")
    assert (second.previous, second.current) == ("a", "b")
    assert [(r["from"], r["to"]) for r in read_history(tmp_path)] == [(None, "a"), ("a", "b")]
    assert (tmp_path / "current").is_symlink()


def test_switch_to_the_current_release_changes_nothing(tmp_path: Path) -> None:
    """Re-switching to the active release reports no change and writes no history."""
    stage(tmp_path, "a")
    deploy(tmp_path, "a")
    again = switch_release(tmp_path, "a", "deploy")
    assert not again.changed and again.why == ""
    assert [r["action"] for r in read_history(tmp_path)] == ["switch", "commit"]


def test_incomplete_release_is_refused(tmp_path: Path) -> None:
    """A release without its model is never made current."""
    (tmp_path / "releases" / "half").mkdir(parents=True)
    with pytest.raises(JetpolicyError, match=r"missing policy\.onnx"):
        switch_release(tmp_path, "half", "deploy")
    assert current_release(tmp_path) is None


def test_rollback_returns_to_the_release_before_and_not_back_again(tmp_path: Path) -> None:
    """a -> b -> c, rollback goes to b; a second rollback goes to a, never back to c."""
    for rid in "abc":
        stage(tmp_path, rid)
        deploy(tmp_path, rid)
    assert rollback(tmp_path, "gate failed").current == "b"
    assert rollback_target(tmp_path) == "a"
    assert rollback(tmp_path, "manual").current == "a"
    assert read_history(tmp_path)[-1]["action"] == "rollback"


def test_rollback_without_an_earlier_release_says_so(tmp_path: Path) -> None:
    """With one release ever deployed there is nothing to roll back to."""
    stage(tmp_path, "a")
    switch_release(tmp_path, "a", "deploy")
    with pytest.raises(JetpolicyError, match="nothing to roll back"):
        rollback(tmp_path, "manual")


def test_torn_history_line_is_ignored(tmp_path: Path) -> None:
    """A half-written last line (power loss) does not block a rollback."""
    for rid in "ab":
        stage(tmp_path, rid)
        switch_release(tmp_path, rid, "deploy")
    with (tmp_path / "history.jsonl").open("a") as handle:
        handle.write('{"action": "swi')
    assert rollback_target(tmp_path) == "a"


def test_switch_moves_runtime_and_config_with_the_release(tmp_path: Path) -> None:
    """The service's three links all point at the new deployment after one switch."""
    stage(tmp_path, "a")
    venv = runtime(tmp_path, "r1")
    switch_release(tmp_path, "a", "deploy", runtime=venv, config=config(tmp_path, "c1.json"))
    assert (tmp_path / "runtime" / "current" / "bin" / "jetpolicy").is_file()
    assert (tmp_path / "runner.json").resolve() == (tmp_path / "configs" / "c1.json").resolve()
    assert current_deployment(tmp_path) == Deployment("a", venv, "c1.json")


def test_a_new_runtime_alone_is_a_switch_and_rolls_back(tmp_path: Path) -> None:
    """Same policy, new runtime: the switch changes, and the rollback restores the old runtime."""
    stage(tmp_path, "a")
    old, new = runtime(tmp_path, "r1"), runtime(tmp_path, "r2")
    cfg = config(tmp_path, "c1.json")
    switch_release(tmp_path, "a", "deploy", runtime=old, config=cfg)
    result = switch_release(tmp_path, "a", "deploy", runtime=new, config=cfg)
    assert result.changed and (result.previous_runtime, result.runtime) == (old, new)
    back = rollback(tmp_path, "gate failed")
    assert back.changed and back.current == "a" and back.runtime == old
    assert current_deployment(tmp_path).runtime == old
    assert read_history(tmp_path)[-1]["runtime_to"] == old


def test_rollback_restores_the_config_the_previous_release_ran_with(tmp_path: Path) -> None:
    """A new runner config that breaks the service is undone with the policy."""
    stage(tmp_path, "a")
    stage(tmp_path, "b")
    venv = runtime(tmp_path, "r1")
    switch_release(tmp_path, "a", "deploy", runtime=venv, config=config(tmp_path, "good.json"))
    switch_release(tmp_path, "b", "deploy", config=config(tmp_path, "bad.json"))
    assert current_deployment(tmp_path).runtime == venv  # not named: kept
    rollback(tmp_path, "health failed")
    assert current_deployment(tmp_path).config == "good.json"
    assert current_release(tmp_path) == "a"


def test_rollback_keeps_the_current_runtime_when_the_old_one_was_pruned(tmp_path: Path) -> None:
    """A pruned runtime does not keep the robot on a failing release; the result says what happened."""
    stage(tmp_path, "a")
    stage(tmp_path, "b")
    old, new = runtime(tmp_path, "r1"), runtime(tmp_path, "r2")
    switch_release(tmp_path, "a", "deploy", runtime=old)
    switch_release(tmp_path, "b", "deploy", runtime=new)
    (Path(old) / "bin" / "jetpolicy").unlink()
    back = rollback(tmp_path, "gate failed")
    assert back.current == "a" and back.runtime == new
    assert "kept the current runtime" in back.notes
    assert "kept the current runtime" in read_history(tmp_path)[-1]["notes"]


def test_switch_refuses_a_runtime_without_jetpolicy(tmp_path: Path) -> None:
    """A half-installed runtime is never made current; nothing moves."""
    stage(tmp_path, "a")
    (tmp_path / "empty-venv").mkdir()
    with pytest.raises(JetpolicyError, match="has no bin/jetpolicy"):
        switch_release(tmp_path, "a", "deploy", runtime=str(tmp_path / "empty-venv"))
    assert current_release(tmp_path) is None and not (tmp_path / "history.jsonl").exists()


def test_history_from_before_runtime_tracking_still_rolls_back(tmp_path: Path) -> None:
    """Records without runtime/config fields match on the release alone."""
    for rid in "ab":
        stage(tmp_path, rid)
    (tmp_path / "history.jsonl").write_text(
        '{"action": "switch", "from": null, "to": "a", "reason": "deploy"}\n'
        '{"action": "switch", "from": "a", "to": "b", "reason": "deploy"}\n'
    )
    (tmp_path / "current").symlink_to("releases/b")
    assert rollback_target(tmp_path) == "a"


def test_rollback_after_a_switch_torn_before_its_history_line(tmp_path: Path) -> None:
    """Power lost after the runtime link moved but before the history line: the rollback still finds
    the release before the current one."""
    for rid in "ab":
        stage(tmp_path, rid)
    old, new = runtime(tmp_path, "r1"), runtime(tmp_path, "r2")
    switch_release(tmp_path, "a", "deploy", runtime=old)
    switch_release(tmp_path, "b", "deploy", runtime=old)
    (tmp_path / "runtime" / "current").unlink()
    (tmp_path / "runtime" / "current").symlink_to(new)  # the torn switch's first rename
    back = rollback(tmp_path, "manual")
    assert (back.current, back.runtime) == ("a", old)


# (releases as (id, mtime), protected ids, keep) -> removed, newest first.
PRUNE_CASES = [
    pytest.param([("a", 1), ("b", 2), ("c", 3)], ["c", "b"], 3, [], id="within-keep"),
    pytest.param([("a", 1), ("b", 2), ("c", 3), ("d", 4)], ["d", "c"], 3, ["a"], id="oldest-other-goes"),
    pytest.param(
        [("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5)], ["e", "d"], 2, ["c", "b", "a"], id="two"
    ),
    # After rollbacks the release to return to can be the oldest on disk: still kept.
    pytest.param([("a", 1), ("b", 2), ("c", 3), ("d", 4)], ["d", "a"], 3, ["b"], id="old-rollback-target"),
    # More protected than keep: none of them goes, every other does.
    pytest.param([("a", 1), ("b", 2), ("c", 3)], ["c", "b", "a"], 1, [], id="protected-beyond-keep"),
    pytest.param([("a", 1), ("b", 2), ("c", 3)], ["c", None], 1, ["b", "a"], id="no-rollback-target"),
    # A protected id that is not on disk frees no room for others.
    pytest.param([("a", 1), ("b", 2), ("c", 3)], ["c", "gone"], 2, ["a"], id="protected-missing"),
    pytest.param([], ["c"], 3, [], id="nothing-staged"),
]


@pytest.mark.parametrize(("releases", "protected", "keep", "removed"), PRUNE_CASES)
def test_releases_to_prune(
    releases: List[Tuple[str, float]], protected: List[Optional[str]], keep: int, removed: List[str]
) -> None:
    """`keep` releases stay in all: the protected ones, then the newest others; pruning what is left
    removes nothing more (idempotent)."""
    assert releases_to_prune(releases, protected, keep) == removed
    left = [r for r in releases if r[0] not in removed]
    assert releases_to_prune(left, protected, keep) == []
    assert {p for p in protected if p in {r for r, _ in releases}} <= {r for r, _ in left}


def test_prune_keep_below_one_is_refused() -> None:
    """keep 0 would be an instruction to delete the running release: refused with a fix."""
    with pytest.raises(ConfigError):
        releases_to_prune([("a", 1)], ["a"], 0)


def test_prune_never_removes_the_current_release_or_the_one_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On disk, after five deploys and a rollback (current r4, rollback target r3, the oldest
    directory on disk): keep 2 leaves exactly those two however old, staging directories are
    untouched, and a second prune (library or CLI) removes nothing."""
    for release in ["r1", "r2", "r3", "r4", "r5"]:
        stage(tmp_path, release)
        deploy(tmp_path, release)
    for age, release in enumerate(["r3", "r1", "r2", "r4", "r5"]):
        os.utime(tmp_path / "releases" / release, (1000 + age, 1000 + age))
    rollback(tmp_path, "health failed")
    (tmp_path / "releases" / ".staging-r6").mkdir()
    assert (current_release(tmp_path), rollback_target(tmp_path)) == ("r4", "r3")
    assert prune_releases(tmp_path, keep=2) == ["r5", "r2", "r1"]
    assert sorted(p.name for p in (tmp_path / "releases").iterdir()) == [".staging-r6", "r3", "r4"]
    assert prune_releases(tmp_path, keep=2) == []
    assert main(["release", "--root", str(tmp_path), "prune", "--keep", "2"]) == 0
    assert json.loads(capsys.readouterr().out) == {"changed": False, "removed": [], "engines_removed": []}
    assert current_release(tmp_path) == "r4"


def engine(root: Path, key: str, *releases: str) -> None:
    """A cached engine <key>.engine with its sidecar, linked as the engine of `releases`."""
    engines = root / "engines"
    (engines / "by-release").mkdir(parents=True, exist_ok=True)
    (engines / f"{key}.engine").write_bytes(b"plan")
    (engines / f"{key}.json").write_text("{}")
    for release in releases:
        (engines / "by-release" / f"{release}.engine").symlink_to(f"../{key}.engine")


def test_prune_removes_the_engines_of_pruned_releases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pruned release takes its by-release link with it, and a cached engine no link points at any
    more goes with its sidecar; an engine a kept release shares, and files that are not cached
    engines, stay; a second prune removes nothing."""
    for release in ["r1", "r2", "r3", "r4"]:
        stage(tmp_path, release)
        deploy(tmp_path, release)
    for age, release in enumerate(["r1", "r2", "r3", "r4"]):
        os.utime(tmp_path / "releases" / release, (1000 + age, 1000 + age))
    old, shared, new = "a" * 64, "b" * 64, "c" * 64
    engine(tmp_path, old, "r1")
    engine(tmp_path, shared, "r2", "r3")
    engine(tmp_path, new, "r4")
    (tmp_path / "engines" / "timing.cache").write_bytes(b"keep")
    assert main(["release", "--root", str(tmp_path), "prune", "--keep", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["removed"] == ["r2", "r1"] and out["changed"]
    assert out["engines_removed"] == ["by-release/r1.engine", "by-release/r2.engine", f"{old}.engine"]
    left = {p.name for p in (tmp_path / "engines").iterdir()}
    cached = {f"{key}.{ext}" for key in (shared, new) for ext in ("engine", "json")}
    assert left == {"by-release", "timing.cache", *cached}
    links = sorted(p.name for p in (tmp_path / "engines" / "by-release").iterdir())
    assert links == ["r3.engine", "r4.engine"]
    assert main(["release", "--root", str(tmp_path), "prune", "--keep", "2"]) == 0
    assert json.loads(capsys.readouterr().out) == {"changed": False, "removed": [], "engines_removed": []}


def test_prune_keeps_a_fresh_engine_no_link_points_at_yet(tmp_path: Path) -> None:
    """An engine never linked is a killed build's leftover or one a running deploy is about to link:
    it goes only once it is older than the grace; one of a pruned release goes with it at once."""
    for release in ["r1", "r2", "r3"]:
        stage(tmp_path, release)
        deploy(tmp_path, release)
    for age, release in enumerate(["r1", "r2", "r3"]):
        os.utime(tmp_path / "releases" / release, (1000 + age, 1000 + age))
    pruned, fresh, stale = "a" * 64, "d" * 64, "e" * 64
    engine(tmp_path, pruned, "r1")
    engine(tmp_path, fresh)
    engine(tmp_path, stale)
    now = time.time()
    grace = UNLINKED_ENGINE_GRACE_S
    os.utime(tmp_path / "engines" / f"{fresh}.engine", (now - grace + 60, now - grace + 60))
    os.utime(tmp_path / "engines" / f"{stale}.engine", (now - grace - 60, now - grace - 60))
    assert prune_releases(tmp_path, keep=2) == ["r1"]
    removed = prune_engines(tmp_path, now=now)
    assert removed == ["by-release/r1.engine", f"{pruned}.engine", f"{stale}.engine"]
    left = {p.name for p in (tmp_path / "engines").iterdir()}
    assert left == {"by-release", f"{fresh}.engine", f"{fresh}.json"}
    assert prune_engines(tmp_path, now=now + 120) == [f"{fresh}.engine"]


def test_a_dry_run_switch_says_it_would_switch_and_changes_nothing(tmp_path: Path) -> None:
    """`release switch --check`: asked before the runner config exists, it says whether the
    deployment would change and leaves links and history as they were."""
    stage(tmp_path, "a")
    stage(tmp_path, "b")
    deploy(tmp_path, "a")
    history = read_history(tmp_path)
    would = switch_release(tmp_path, "b", "deploy", config="not-written-yet.json", dry_run=True)
    assert would.changed and (would.previous, would.current) == ("a", "b")
    assert current_release(tmp_path) == "a" and read_history(tmp_path) == history
    same = switch_release(tmp_path, "a", "deploy", dry_run=True)
    assert not same.changed
    code = main(["release", "--root", str(tmp_path), "switch", "b", "--check"])
    assert code == 0 and current_release(tmp_path) == "a" and read_history(tmp_path) == history
