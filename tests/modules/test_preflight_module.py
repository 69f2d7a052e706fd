"""jetpolicy_preflight counts no room for what is already on the robot (its *_present_path options)."""

from __future__ import annotations

from pathlib import Path

from moduletest import load_module

jetpolicy_preflight = load_module("jetpolicy_preflight")
MIB = 2**20


def preflight(run_module, root: Path, **extra) -> dict:
    # No thermal zones and no clock check here: only the space requirement is under test.
    args = dict(path=str(root), min_free_mb=1, thermal_glob=str(root / "no-zones*"), time_sync="ignore")
    return run_module(jetpolicy_preflight, dict(args, **extra))


def parts(result: dict) -> dict[str, int]:
    return {what: mib for what, mib in result["space_parts"]}


def test_parts_on_the_robot_need_no_room(run_module, tmp_path: Path) -> None:
    (tmp_path / "policy.onnx").write_bytes(b"x")
    result = preflight(
        run_module, tmp_path,
        artifact_bytes=50 * MIB, artifact_present_path=str(tmp_path / "policy.onnx"),
        engine_bytes=100 * MIB, engine_present_path=str(tmp_path / "missing.engine"),
        runtime_bytes=300 * MIB, runtime_present_path=str(tmp_path / "no-runtime" / "bin" / "jetpolicy"),
    )
    assert result["already_present"] == ["artifact"]
    assert result["needed_mb"] == 1 + 100 + 300, result["space_parts"]
    assert not any(what.startswith("policy") for what in parts(result)), result["space_parts"]


def test_without_present_paths_every_part_counts(run_module, tmp_path: Path) -> None:
    result = preflight(run_module, tmp_path, artifact_bytes=50 * MIB, engine_bytes=100 * MIB)
    assert result["already_present"] == []
    assert result["needed_mb"] == 1 + 50 + 100, result["space_parts"]
