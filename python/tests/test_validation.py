"""validate_policy: every problem reported, each with a clear message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

from jetpolicy.common.errors import PolicyValidationError
from jetpolicy.common.manifest import sha256_file
from jetpolicy.controller.validation import validate_policy


def test_valid_release(example_release: Path) -> None:
    """The example release validates and returns its manifest."""
    manifest = validate_policy(example_release / "policy.onnx", example_release / "policy.json")
    assert manifest.name == "example-mlp"


def test_corrupt_file(example_release: Path, copy_release: Callable[[Path], Path]) -> None:
    """Bytes that are not ONNX are reported as corrupt (with the sha mismatch) and the fix."""
    release = copy_release(example_release)
    (release / "policy.onnx").write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(PolicyValidationError) as info:
        validate_policy(release / "policy.onnx", release / "policy.json")
    text = "\n".join(info.value.problems)
    assert "is not a readable ONNX model" in text
    assert "sha256 mismatch" in text
    assert "corrupt or not ONNX" in info.value.fix


def test_sha_mismatch(example_release: Path, copy_release: Callable[[Path], Path]) -> None:
    """A manifest sha256 that differs from the file is the only problem reported."""
    release = copy_release(example_release)
    raw = json.loads((release / "policy.json").read_text())
    raw["sha256"] = "0" * 64
    (release / "policy.json").write_text(json.dumps(raw))
    with pytest.raises(PolicyValidationError) as info:
        validate_policy(release / "policy.onnx", release / "policy.json")
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("sha256 mismatch: policy.onnx is ")


def test_wrong_names_and_dims(example_release: Path, copy_release: Callable[[Path], Path]) -> None:
    """Renamed tensors and a wrong axis are each named: tensor, axis, model vs manifest."""
    release = copy_release(example_release)
    raw = json.loads((release / "policy.json").read_text())
    raw["inputs"][0]["name"] = "observations"
    raw["normalization"] = {"observations": raw["normalization"]["obs"]}
    raw["outputs"][0]["shape"] = [1, 10]
    raw.pop("action")
    raw.pop("safe_action")
    (release / "policy.json").write_text(json.dumps(raw))
    with pytest.raises(PolicyValidationError) as info:
        validate_policy(release / "policy.onnx", release / "policy.json")
    problems = info.value.problems
    assert "input 'observations' is in the manifest but not in the model (model has ['obs'])" in problems
    assert "input 'obs' is in the model but not in the manifest" in problems
    assert "output 'actions' axis 1: model 12 vs manifest 10" in problems


def test_dynamic_dims(tmp_path: Path, example_release: Path) -> None:
    """A symbolic batch dim is reported with its axis and the static-shape fix."""
    import onnx

    model = onnx.load(str(example_release / "policy.onnx"))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    path = tmp_path / "policy.onnx"
    onnx.save(model, str(path))
    raw = json.loads((example_release / "policy.json").read_text())
    raw["sha256"] = sha256_file(path)
    (tmp_path / "policy.json").write_text(json.dumps(raw))
    with pytest.raises(PolicyValidationError) as info:
        validate_policy(path, tmp_path / "policy.json")
    assert (
        "input 'obs' has dynamic dims at axis [0] (['batch', 48]); export with static shapes (batch 1)"
        in info.value.problems
    )


def test_dtype_mismatch(example_release: Path, copy_release: Callable[[Path], Path]) -> None:
    """A manifest dtype that differs from the model's is reported."""
    release = copy_release(example_release)
    raw = json.loads((release / "policy.json").read_text())
    raw["outputs"][0]["dtype"] = "float16"
    (release / "policy.json").write_text(json.dumps(raw))
    with pytest.raises(PolicyValidationError) as info:
        validate_policy(release / "policy.onnx", release / "policy.json")
    assert "output 'actions' dtype: model float32 vs manifest float16" in info.value.problems


def test_cli_error_is_one_line_exit_2(
    example_release: Path, copy_release: Callable[[Path], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`jetpolicy validate` on a bad pair exits 2 with one 'cause; fix' line on stderr."""
    from jetpolicy.cli import main

    release = copy_release(example_release)
    (release / "policy.onnx").write_bytes(b"junk")
    assert (
        main(
            ["validate", "--model", str(release / "policy.onnx"), "--manifest", str(release / "policy.json")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("jetpolicy: error: sha256 mismatch") and "; fix: " in err


# ---- The manifest's tensorrt section against the policy directory and the model -----------------


def _dynamic_batch_release(example_release: Path, out: Path) -> Path:
    """The example policy with a dynamic batch axis (what an optimisation profile is for)."""
    import onnx

    out.mkdir()
    model = onnx.load(str(example_release / "policy.onnx"))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(model, str(out / "policy.onnx"))
    raw = json.loads((example_release / "policy.json").read_text())
    raw["sha256"] = sha256_file(out / "policy.onnx")
    (out / "policy.json").write_text(json.dumps(raw))
    return out


def _set_tensorrt(release: Path, section: Dict[str, Any]) -> None:
    raw = json.loads((release / "policy.json").read_text())
    raw["tensorrt"] = section
    (release / "policy.json").write_text(json.dumps(raw))


def _int8_section(release: Path, cache: bytes = b"TRT-8601-EntropyCalibration2\n") -> Dict[str, Any]:
    (release / "calib.cache").write_bytes(cache)
    return {
        "precision": "int8",
        "calibration_cache": {"file": "calib.cache", "sha256": sha256_file(release / "calib.cache")},
        "profiles": {"obs": {"min": [1, 48], "opt": [4, 48], "max": [8, 48]}},
    }


def test_int8_with_batch_profile_validates(example_release: Path, tmp_path: Path) -> None:
    """A dynamic-batch model with a cache beside it and a 1/4/8 batch profile is valid; without the
    profile its dynamic axis is still refused."""
    release = _dynamic_batch_release(example_release, tmp_path / "p")
    with pytest.raises(PolicyValidationError, match="dynamic dims at axis"):
        validate_policy(release / "policy.onnx", release / "policy.json")
    _set_tensorrt(release, _int8_section(release))
    manifest = validate_policy(release / "policy.onnx", release / "policy.json")
    assert manifest.tensorrt is not None and manifest.tensorrt.profiles["obs"].max == [8, 48]
    assert manifest.input("obs").shape == [1, 48]


def test_missing_calibration_cache(example_release: Path, tmp_path: Path) -> None:
    """A cache the manifest names but the directory lacks is named with the fix."""
    release = _dynamic_batch_release(example_release, tmp_path / "p")
    _set_tensorrt(release, _int8_section(release))
    (release / "calib.cache").unlink()
    with pytest.raises(PolicyValidationError) as info:
        validate_policy(release / "policy.onnx", release / "policy.json")
    assert info.value.problems == [f"tensorrt.calibration_cache: calib.cache is not in {release}"]
    assert info.value.fix.startswith("put the calibration cache beside policy.json as calib.cache")


def test_calibration_cache_sha_mismatch(example_release: Path, tmp_path: Path) -> None:
    """A cache whose content is not the one the manifest hashed is refused, both sha256s named."""
    release = _dynamic_batch_release(example_release, tmp_path / "p")
    section = _int8_section(release)
    _set_tensorrt(release, section)
    (release / "calib.cache").write_bytes(b"another calibration run\n")
    with pytest.raises(PolicyValidationError) as info:
        validate_policy(release / "policy.onnx", release / "policy.json")
    actual = sha256_file(release / "calib.cache")
    assert info.value.problems == [
        f"tensorrt.calibration_cache: calib.cache has sha256 {actual}, "
        f"the manifest says {section['calibration_cache']['sha256']}"
    ]
    assert f"write {actual} into tensorrt.calibration_cache.sha256" in info.value.fix


def test_profile_varying_a_fixed_axis(
    example_release: Path, copy_release: Callable[[Path], Path], tmp_path: Path
) -> None:
    """A batch range on a model that fixes batch at 1, or a feature dim off the model's, is refused
    per axis; so is the manifest error the profile causes (runner shape outside it)."""
    release = copy_release(example_release)
    section = _int8_section(release)
    section["profiles"]["obs"] = {"min": [1, 48], "opt": [4, 48], "max": [8, 64]}
    _set_tensorrt(release, section)
    with pytest.raises(PolicyValidationError) as info:
        validate_policy(release / "policy.onnx", release / "policy.json")
    assert info.value.problems == [
        "tensorrt.profiles['obs'] axis 0: min/opt/max [1, 4, 8] but the model fixes that axis at 1",
        "tensorrt.profiles['obs'] axis 1: min/opt/max [48, 48, 64] but the model fixes that axis at 48",
    ]
    assert "set min, opt and max of axis 0 to 1" in info.value.fix
    assert "set min, opt and max of axis 1 to 48" in info.value.fix
    section["profiles"]["obs"] = {"min": [2, 48], "opt": [4, 48], "max": [8, 48]}
    _set_tensorrt(release, section)
    with pytest.raises(PolicyValidationError) as info:
        validate_policy(release / "policy.onnx", release / "policy.json")
    assert "does not contain the input's shape [1, 48]" in info.value.problems[0]
    assert "widen the profile to include [1, 48]" in info.value.fix


def test_cli_json_gives_the_release_id_and_cache(
    example_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`validate --json` reports what policy_artifact stages: the release id (which changes with
    the calibration cache's content) and the cache's file and sha256."""
    from jetpolicy.cli import main

    def args(release: Path) -> List[str]:
        model, manifest = str(release / "policy.onnx"), str(release / "policy.json")
        return ["validate", "--model", model, "--manifest", manifest, "--json"]

    assert main(args(example_release)) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["calibration_cache"] is None
    release = _dynamic_batch_release(example_release, tmp_path / "p")
    ids = []
    for content in (b"calibration run 1\n", b"calibration run 2\n"):
        section = _int8_section(release, content)
        _set_tensorrt(release, section)
        assert main(args(release)) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["calibration_cache"] == section["calibration_cache"]
        ids.append(result["release_id"])
    assert len(set(ids)) == 2
    assert plain["release_id"] == plain["sha256"][:16] not in ids
