"""The manifest parser: round trip and clear rejections."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

from jetpolicy.common.errors import ManifestError
from jetpolicy.common.manifest import (
    CalibrationCache,
    ShapeProfile,
    load_manifest,
    manifest_from_dict,
    release_id,
)


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


def _layout() -> List[Dict[str, Any]]:
    return [
        {"name": "ang_vel", "width": 1, "history": 2, "scale": [0.25], "clip": [-5, 5]},
        {"name": "joint_pos", "width": 2},
    ]


def test_observation_layout_round_trip(tmp_path: Path) -> None:
    """An observation layout (terms of width x history adding up to the input) survives save/load,
    unset scale/clip are left out of the file, and a manifest without one stays valid."""
    raw = _raw()
    raw["observation_layout"] = {"obs": _layout()}
    manifest = manifest_from_dict(raw)
    assert [(t.name, t.size, t.scale, t.clip) for t in manifest.observation_layout["obs"]] == [
        ("ang_vel", 2, [0.25], [-5.0, 5.0]),
        ("joint_pos", 2, None, None),
    ]
    path = tmp_path / "policy.json"
    manifest.save(path)
    assert load_manifest(path) == manifest
    assert json.loads(path.read_text())["observation_layout"]["obs"][1] == {
        "name": "joint_pos",
        "width": 2,
        "history": 1,
    }
    assert manifest_from_dict(_raw()).observation_layout == {}
    assert "observation_layout" not in manifest_from_dict(_raw()).to_dict()


def _layout_with(index: int, **changes: Any) -> Any:
    terms = _layout()
    terms[index].update(changes)
    return {"obs": terms}


TERMS = "observation_layout[obs]"
LAYOUT_ERRORS = [
    ("not-a-mapping", [1], "observation_layout must map input names to terms"),
    ("unknown-input", {"camera": _layout()}, "observation_layout for unknown observation 'camera'"),
    (
        "state-input",
        {"h_in": [{"name": "h", "width": 2}]},
        "observation_layout for unknown observation 'h_in'",
    ),
    ("empty", {"obs": []}, TERMS + " must be a non-empty list of terms"),
    ("no-name", _layout_with(0, name=""), TERMS + "[0] needs a 'name'"),
    ("width-zero", _layout_with(1, width=0), TERMS + ".joint_pos.width must be a positive integer"),
    ("history-bool", _layout_with(0, history=True), TERMS + ".ang_vel.history must be a positive"),
    ("scale-length", _layout_with(0, scale=[1, 2]), TERMS + ".ang_vel.scale needs 1 numbers, got 2"),
    ("clip-inverted", _layout_with(0, clip=[5, -5]), TERMS + ".ang_vel.clip has low > high"),
    ("duplicate", _layout_with(1, name="ang_vel", width=1, history=2), "repeats terms ['ang_vel']"),
    ("sizes", _layout_with(1, width=3), "terms add up to 5 values (width x history) but input 'obs' has 4"),
]


@pytest.mark.parametrize(
    ("layout", "expected"), [c[1:] for c in LAYOUT_ERRORS], ids=[c[0] for c in LAYOUT_ERRORS]
)
def test_observation_layout_rejected(layout: Any, expected: str) -> None:
    """A layout that is malformed or does not add up to its observation input is refused."""
    raw = _raw()
    raw["observation_layout"] = layout
    with pytest.raises(ManifestError) as info:
        manifest_from_dict(raw, source="policy.json")
    assert expected in info.value.cause and info.value.cause.startswith("policy.json: ")


@pytest.mark.parametrize(
    ("section", "key", "values", "expected"),
    [
        pytest.param("safe_action", None, [0.0, "NaN"],
                     r"safe_action\[actions\] has NaN or infinite values at index 1", id="safe-nan"),
        pytest.param("safe_action", None, ["Infinity", 0.0],
                     r"safe_action\[actions\] has NaN or infinite", id="safe-inf"),
        pytest.param("action", "low", ["NaN", -1.0], r"action\[actions\]\.low has NaN values at index 0",
                     id="low-nan"),
        pytest.param("action", "high", [1.0, "NaN"], r"action\[actions\]\.high has NaN values at index 1",
                     id="high-nan"),
        pytest.param("action", "scale", [1.0, "-Infinity"], r"action\[actions\]\.scale has NaN or infinite",
                     id="scale-inf"),
    ],
)  # fmt: skip
def test_nonfinite_safe_action_and_limits_refused_at_load(
    tmp_path: Path, section: str, key: Any, values: List[Any], expected: str
) -> None:
    """NaN in the safe action or the action limits (which Python's json reads from a bare NaN) is
    refused when the file loads, naming the field and the index: NaN passes through the runtime's
    clip untouched, so it would reach the robot as its safe command."""
    raw = _raw()
    numbers = [float(v) for v in values]
    if key is None:
        raw[section] = {"actions": numbers}
    else:
        raw[section]["actions"][key] = numbers
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(raw))  # writes bare NaN / Infinity, as a careless exporter would
    assert "NaN" in path.read_text() or "Infinity" in path.read_text()
    with pytest.raises(ManifestError, match=expected) as info:
        load_manifest(path)
    assert str(path) in info.value.cause and "finite" in info.value.fix


def test_infinite_limit_means_no_limit() -> None:
    """+-Infinity as a limit is accepted: it is what an absent limit means."""
    raw = _raw()
    raw["action"]["actions"] = {"low": [float("-inf"), -1.0], "high": [float("inf"), 1.0]}
    manifest = manifest_from_dict(raw)
    assert manifest.action["actions"].low == [float("-inf"), -1.0]


# ---- The optional tensorrt section (INT8 calibration cache, optimisation profiles) ---------------

CACHE_SHA = "c" * 64


def _with_tensorrt(**section: Any) -> Dict[str, Any]:
    raw = _raw()
    raw["tensorrt"] = section
    return raw


def _int8(**extra: Any) -> Dict[str, Any]:
    return _with_tensorrt(
        precision="int8",
        calibration_cache={"file": "calib.cache", "sha256": CACHE_SHA},
        profiles={"obs": {"min": [1, 4], "opt": [4, 4], "max": [8, 4]}},
        **extra,
    )


def test_tensorrt_section_round_trips(tmp_path: Path) -> None:
    """The section parses into typed settings, survives save/load, and is left out when absent."""
    manifest = manifest_from_dict(_int8())
    assert manifest.tensorrt is not None
    assert manifest.tensorrt.precision == "int8"
    assert manifest.tensorrt.calibration_cache == CalibrationCache("calib.cache", CACHE_SHA)
    assert manifest.tensorrt.profiles["obs"] == ShapeProfile([1, 4], [4, 4], [8, 4])
    path = tmp_path / "policy.json"
    manifest.save(path)
    assert load_manifest(path) == manifest
    assert json.loads(path.read_text())["tensorrt"] == _int8()["tensorrt"]
    assert "tensorrt" not in manifest_from_dict(_raw()).to_dict()


def test_release_id_is_the_model_sha_without_tensorrt() -> None:
    """A policy without the section keeps the release id every earlier release had: sha256[:16]."""
    assert release_id(manifest_from_dict(_raw())) == "a" * 16


def test_release_id_follows_the_calibration_content_and_profiles() -> None:
    """The cache's sha256 and the profiles are part of the release identity; equal sections give
    equal ids."""
    base = release_id(manifest_from_dict(_int8()))
    assert base == release_id(manifest_from_dict(_int8()))
    assert base != "a" * 16
    other_cache = _int8()
    other_cache["tensorrt"]["calibration_cache"]["sha256"] = "d" * 64
    assert release_id(manifest_from_dict(other_cache)) != base
    other_profile = _int8()
    other_profile["tensorrt"]["profiles"]["obs"]["max"] = [16, 4]
    assert release_id(manifest_from_dict(other_profile)) != base


@pytest.mark.parametrize(
    ("section", "cause", "fix"),
    [
        pytest.param({"precision": "int4"}, "is not a TensorRT builder precision", "use one of fp32",
                     id="precision"),
        pytest.param({"precision": "fp16", "calibration_cache": {"file": "calib.cache", "sha256": CACHE_SHA}},
                     "tensorrt.precision is fp16; only INT8 builds read a calibration cache",
                     "set tensorrt.precision to int8", id="calibration-without-int8"),
        pytest.param({"calibration_cache": {"file": "calib.cache", "sha256": CACHE_SHA}},
                     "tensorrt.precision is unset", "set tensorrt.precision to int8",
                     id="calibration-without-precision"),
        pytest.param({"precision": "int8",
                      "calibration_cache": {"file": "../calib.cache", "sha256": CACHE_SHA}},
                     "must be a file name in the policy directory", "name it without a directory",
                     id="calibration-path"),
        pytest.param({"precision": "int8", "calibration_cache": {"file": "policy.onnx", "sha256": CACHE_SHA}},
                     "is a name the release uses itself", "rename the cache", id="calibration-reserved"),
        pytest.param({"precision": "int8", "calibration_cache": {"file": "calib.cache", "sha256": "C" * 64}},
                     "64 lowercase hex digits", "sha256sum calib.cache", id="calibration-sha"),
        pytest.param({"profiles": {"h_out": {"min": [1, 2], "opt": [1, 2], "max": [1, 2]}}},
                     "names 'h_out', which is not an input", "use the model's input names (h_in, obs)",
                     id="profile-unknown-input"),
        pytest.param({"profiles": {"obs": {"min": [1, 4], "opt": [1, 4]}}},
                     "needs min, opt and max", "give all three", id="profile-missing-max"),
        pytest.param({"profiles": {"obs": {"min": [1], "opt": [1, 4], "max": [8, 4]}}},
                     "tensorrt.profiles[obs].min has 1 dims but the input has rank 2",
                     "one dim per axis", id="profile-rank"),
        pytest.param({"profiles": {"obs": {"min": [1, 4], "opt": [8, 4], "max": [4, 4]}}},
                     "is not min <= opt <= max at axis [0]", "grows from min through opt to max",
                     id="profile-order"),
        pytest.param({"profiles": {"obs": {"min": [2, 4], "opt": [4, 4], "max": [8, 4]}}},
                     "does not contain the input's shape [1, 4] at axis [0]",
                     "widen the profile to include [1, 4]",
                     id="profile-excludes-runner-shape"),
    ],
)  # fmt: skip
def test_tensorrt_section_errors_name_cause_and_fix(section: Dict[str, Any], cause: str, fix: str) -> None:
    """Each bad tensorrt section is refused with a ManifestError that names the field and the fix."""
    with pytest.raises(ManifestError) as info:
        manifest_from_dict(_with_tensorrt(**section), source="policy.json")
    assert info.value.cause.startswith("policy.json: ")
    assert cause in info.value.cause
    assert fix in info.value.fix
