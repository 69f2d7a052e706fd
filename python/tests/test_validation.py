"""validate_policy: every problem reported, each with a clear message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

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
