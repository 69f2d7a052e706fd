"""Release switching on the robot: atomic `current`, history, and rollback targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from jetpolicy.errors import JetpolicyError
from jetpolicy.releases import current_release, read_history, rollback, rollback_target, switch_release


def stage(root: Path, release_id: str) -> None:
    release = root / "releases" / release_id
    release.mkdir(parents=True)
    (release / "policy.onnx").write_bytes(b"onnx")
    (release / "policy.json").write_text("{}")


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
    switch_release(tmp_path, "a", "deploy")
    again = switch_release(tmp_path, "a", "deploy")
    assert not again.changed
    assert len(read_history(tmp_path)) == 1


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
        switch_release(tmp_path, rid, "deploy")
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
