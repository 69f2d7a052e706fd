"""`jetpolicy hold` / `release-hold`: the operator hold file, written and removed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Iterator

import pytest

from jetpolicy.cli import main
from jetpolicy.robot import hold as hold_module
from jetpolicy.robot.hold import DEFAULT_HOLD_FILE, Hold, HoldFileError, held_by, read_hold, set_hold


@pytest.fixture
def strict_umask() -> Iterator[None]:
    """The runner unit's UMask=0077: the hold must be readable by every check all the same."""
    previous = os.umask(0o077)
    yield
    os.umask(previous)


def test_default_hold_file_is_on_tmpfs_outside_the_runners_runtime_directory() -> None:
    """Under /run (a reboot clears it) but not /run/jetpolicy, which systemd removes when the runner stops."""
    assert DEFAULT_HOLD_FILE.parts[:2] == ("/", "run")
    assert Path("/run/jetpolicy") not in DEFAULT_HOLD_FILE.parents


def test_hold_writes_who_why_since_and_pid_readable_by_all(
    tmp_path: Path, strict_umask: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The directory is created 0755 and the file written 0644, whatever the umask; `by` is the
    person behind sudo."""
    monkeypatch.setenv("SUDO_USER", "alice")
    path = tmp_path / "run" / "jetpolicy-hold" / "hold"
    assert main(["hold", "--reason", "calibrating the arm", "--hold-file", str(path)]) == 0
    data = json.loads(path.read_text())
    assert (data["reason"], data["by"], data["pid"], data["schema_version"]) == (
        "calibrating the arm", "alice", os.getpid(), 1,
    )  # fmt: skip
    assert isinstance(data["since"], float)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    assert [p.name for p in path.parent.iterdir()] == ["hold"]  # no temporary file left
    out = capsys.readouterr().out
    assert "held by alice" in out and "calibrating the arm" in out and "sudo jetpolicy release-hold" in out


def test_held_by_prefers_the_sudo_user() -> None:
    assert held_by({"SUDO_USER": "alice", "USER": "root"}) == "alice"
    assert held_by({"USER": "bob"}) == "bob"
    assert held_by({}) == f"uid {os.getuid()}"


def test_a_second_hold_replaces_the_first_and_says_what_it_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hold"
    set_hold(path, Hold("first", "alice", 1_700_000_000.0, 1))
    assert main(["hold", "--reason", "second", "--hold-file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "replaced the earlier hold, held by alice since 2023-11-14 22:13:20 UTC (reason: first)" in out
    current = read_hold(path)
    assert current is not None and current.reason == "second"


def test_hold_over_a_malformed_file_replaces_it_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "hold"
    path.write_text("{not json")
    replaced = set_hold(path, Hold("", "alice", 1.0, 1))
    assert "not readable as one" in replaced and "is not JSON" in replaced
    assert read_hold(path) == Hold("", "alice", 1.0, 1)


def test_release_hold_removes_it_and_says_whether_one_was_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0 either way: the robot is free afterwards in both cases."""
    path = tmp_path / "hold"
    set_hold(path, Hold("maintenance", "alice", 1_700_000_000.0, 1))
    assert main(["release-hold", "--hold-file", str(path)]) == 0
    assert not path.exists()
    assert "released the hold: held by alice" in capsys.readouterr().out
    assert main(["release-hold", "--hold-file", str(path)]) == 0
    assert "no hold was set" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, what",
    [
        pytest.param("", "is empty", id="empty"),
        pytest.param("[1]", "holds a JSON list", id="not-an-object"),
        pytest.param('{"reason": "x"}', "does not match its schema", id="fields-missing"),
        pytest.param('{"schema_version": 2, "reason": "", "by": "a", "since": 1, "pid": 1}', "newer",
                     id="newer"),
    ],
)
def test_a_malformed_hold_file_is_an_error_naming_the_file_and_the_fix(
    tmp_path: Path, content: str, what: str
) -> None:
    path = tmp_path / "hold"
    path.write_text(content)
    with pytest.raises(HoldFileError) as info:
        read_hold(path)
    assert str(path) in info.value.cause and what in info.value.cause
    assert "sudo jetpolicy release-hold" in info.value.fix


def _denied(*args: Any, **kwargs: Any) -> Any:
    raise PermissionError(13, "Permission denied")


@pytest.mark.parametrize("command", ["hold", "release-hold"])
def test_permission_denied_names_the_file_and_says_run_it_with_sudo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """Faked (tests may run as root, where a read-only directory does not refuse anything)."""
    path = tmp_path / "hold"
    set_hold(path, Hold("", "alice", 1.0, 1))
    monkeypatch.setattr(hold_module.os, "open", _denied)
    monkeypatch.setattr(Path, "unlink", _denied)
    assert main([command, "--hold-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot change the hold file {path}: permission denied" in err
    assert f"fix: run it with sudo (sudo jetpolicy {command})" in err


def test_a_hold_file_path_that_is_a_directory_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["release-hold", "--hold-file", str(tmp_path)]) == 2
    assert "fix: pass --hold-file the path of a file" in capsys.readouterr().err
