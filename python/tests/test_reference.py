"""The controller's reference cache: written atomically, reused only once it verifies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, List

import numpy as np
import pytest

from jetpolicy.cli import main
from jetpolicy.controller import reference
from jetpolicy.robot.parity import check_parity


def run_reference(release: Path, out: Path, count: int = 8) -> List[str]:
    argv = ["reference", "--model", str(release / "policy.onnx"), "--manifest", str(release / "policy.json")]
    return [*argv, "--out", str(out), "--count", str(count), "--reuse"]


def test_a_truncated_cache_is_written_again(
    example_release: Path, copy_release: Callable[[Path], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A reference.npz cut short (a killed run, a full disk) is not reused: it is rewritten and the
    parity gate passes with it."""
    release = copy_release(example_release)
    out = release / "reference.npz"
    assert main(run_reference(release, out)) == 0
    whole = out.read_bytes()
    out.write_bytes(whole[: len(whole) // 2])
    capsys.readouterr()
    assert main(run_reference(release, out)) == 0
    assert capsys.readouterr().out.startswith("wrote ")
    assert out.read_bytes() == whole
    assert check_parity(release, backend="onnxruntime").passed


def test_a_verified_cache_is_kept_and_a_stale_one_is_not(
    example_release: Path, copy_release: Callable[[Path], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Same manifest and case count: kept untouched ('kept ...', what the role's changed_when reads);
    another case count: written again."""
    release = copy_release(example_release)
    out = release / "reference.npz"
    assert main(run_reference(release, out)) == 0
    os.utime(out, (1000, 1000))
    capsys.readouterr()
    assert main(run_reference(release, out)) == 0
    assert capsys.readouterr().out.startswith("kept ") and out.stat().st_mtime == 1000
    assert main(run_reference(release, out, count=4)) == 0
    assert capsys.readouterr().out.startswith("wrote ")
    with np.load(out) as data:
        assert data["out__actions"].shape[0] == 4


def test_a_failed_write_leaves_the_old_file_and_no_temp(
    example_release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written beside the target and renamed: a write that fails midway changes nothing."""
    out = tmp_path / "cache" / "reference.npz"
    model, manifest = example_release / "policy.onnx", example_release / "policy.json"
    reference.make_reference(model, manifest, out, count=4)
    before = out.read_bytes()

    def torn_savez(handle: Any, **_arrays: Any) -> None:
        handle.write(b"PK\x03\x04 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(reference.np, "savez", torn_savez)
    with pytest.raises(OSError):
        reference.make_reference(model, manifest, out, count=4)
    assert out.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["reference.npz"]


def test_parity_names_a_damaged_reference(
    example_release: Path, copy_release: Callable[[Path], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """On the robot a damaged reference.npz is a one-line cause and fix (exit 2), not a traceback."""
    release = copy_release(example_release)
    (release / "reference.npz").write_bytes(b"PK\x03\x04 truncated")
    assert main(["parity", "--release", str(release), "--backend", "onnxruntime"]) == 2
    assert "is damaged" in capsys.readouterr().err


def test_temps_of_a_killed_writer_are_removed_and_a_live_ones_kept(
    example_release: Path, tmp_path: Path
) -> None:
    """A run killed mid-write leaves `.reference.npz.<pid>.tmp`: the next write removes it when that
    process is gone, and leaves one whose writer still runs."""
    out = tmp_path / "cache" / "reference.npz"
    out.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = out.with_name(f".reference.npz.{dead.pid}.tmp")
    live = out.with_name(f".reference.npz.{os.getppid()}.tmp")
    killed.write_bytes(b"PK\x03\x04 half")
    live.write_bytes(b"PK\x03\x04 busy")
    reference.make_reference(example_release / "policy.onnx", example_release / "policy.json", out, count=2)
    assert sorted(p.name for p in out.parent.iterdir()) == [live.name, "reference.npz"]
