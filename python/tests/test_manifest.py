"""The manifest parser: round trip and clear rejections."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest

from jetpolicy.common.errors import ManifestError
from jetpolicy.common.manifest import load_manifest, manifest_from_dict


def _raw() -> Dict[str, Any]:
    return {
        "format": 1,
        "name": "t",
        "sha256": "a" * 64,
        "control_rate_hz": 100,
        "inputs": [{"name": "obs", "shape": [1, 4]}, {"name": "h_in", "shape": [1, 2]}],
        "outputs": [{"name": "actions", "shape": [1, 2]}, {"name": "h_out", "shape": [1, 2]}],
        "state": [{"input": "h_in", "output": "h_out"}],
        "action": {"actions": {"low": [-1, -1], "high": [1, 1]}},
    }


def test_round_trip_through_file(tmp_path: Path) -> None:
    """A manifest saved and loaded again is equal, and state pairs force the 'state' role."""
    manifest = manifest_from_dict(_raw())
    assert manifest.input("h_in").role == "state"
    assert manifest.output("h_out").role == "state"
    assert [s.name for s in manifest.observation_inputs] == ["obs"]
    path = tmp_path / "policy.json"
    manifest.save(path)
    assert load_manifest(path) == manifest
    assert "scale" not in json.loads(path.read_text())["action"]["actions"]


def test_dynamic_dims_rejected() -> None:
    """A -1 dim is refused with a fix that says to export static shapes."""
    raw = _raw()
    raw["inputs"][0]["shape"] = [-1, 4]
    with pytest.raises(ManifestError, match="static shape") as info:
        manifest_from_dict(raw)
    assert "batch 1" in info.value.fix


def test_low_above_high_rejected() -> None:
    """Action limits with low > high are refused."""
    raw = _raw()
    raw["action"]["actions"]["low"] = [2, 2]
    with pytest.raises(ManifestError, match="low > high"):
        manifest_from_dict(raw)


def test_missing_file_names_fix(tmp_path: Path) -> None:
    """A missing manifest says how to create one."""
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path / "nope.json")
    assert "jetpolicy export" in info.value.fix
