"""Reference creation on the controller and parity checks on the robot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from jetpolicy.cli import main
from jetpolicy.controller.example import build_example
from jetpolicy.controller.reference import make_reference
from jetpolicy.robot.parity import PRECISION_TOLERANCES, check_parity


@pytest.fixture
def release_with_reference(recurrent_release: Path, copy_release: Callable[[Path], Path]) -> Path:
    release = copy_release(recurrent_release)
    make_reference(release / "policy.onnx", release / "policy.json", release / "reference.npz", count=16)
    return release


def test_reference_is_deterministic(release_with_reference: Path, tmp_path: Path) -> None:
    """Same model and seed give identical reference arrays."""
    other = make_reference(
        release_with_reference / "policy.onnx",
        release_with_reference / "policy.json",
        tmp_path / "r.npz",
        count=16,
    )
    with np.load(other) as a, np.load(release_with_reference / "reference.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


def test_parity_passes(release_with_reference: Path) -> None:
    """The same model through the runtime matches its reference (recurrent state carried)."""
    result = check_parity(release_with_reference)
    assert result.passed and result.finite
    assert result.cases == 16
    assert result.max_abs_error <= 1e-5
    assert (result.atol, result.rtol) == PRECISION_TOLERANCES["fp32"]
    assert result.backend == "onnxruntime"


def test_tampered_model_fails(release_with_reference: Path, tmp_path: Path) -> None:
    """A different model (consistent manifest, other weights) fails parity with a large error."""
    tampered = build_example(tmp_path / "t", obs=8, hidden=[16], act=3, rate_hz=50.0, seed=7, recurrent=True)
    for name in ("policy.onnx", "policy.json"):
        (release_with_reference / name).write_bytes((tmp_path / "t" / name).read_bytes())
    reference = release_with_reference / "reference.npz"
    with np.load(reference) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["manifest_sha256"] = np.array(tampered.sha256)  # hide the provenance check: compare numbers
    with reference.open("wb") as handle:
        np.savez(handle, **arrays)
    result = check_parity(release_with_reference)
    assert not result.passed
    assert result.finite
    assert result.max_abs_error > 1e-3


def test_nan_fails(release_with_reference: Path) -> None:
    """A NaN anywhere (here from a NaN observation) fails parity even with huge tolerances."""
    reference = release_with_reference / "reference.npz"
    with np.load(reference) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["in__obs"][3, 0, 0] = np.nan
    with reference.open("wb") as handle:
        np.savez(handle, **arrays)
    result = check_parity(release_with_reference, atol=1e9, rtol=1e9)
    assert not result.finite
    assert not result.passed


def test_cli_prints_json_and_exit_code(
    release_with_reference: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`jetpolicy parity` prints the JSON contract; exit 0 when passing, 1 when failing."""
    assert main(["parity", "--release", str(release_with_reference)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {
        "passed",
        "max_abs_error",
        "max_rel_error",
        "finite",
        "atol",
        "rtol",
        "backend",
        "cases",
    }
    assert out["passed"] is True
    code = main(["parity", "--release", str(release_with_reference), "--atol", "0", "--rtol", "0"])
    strict = json.loads(capsys.readouterr().out)
    assert (strict["atol"], strict["rtol"]) == (0.0, 0.0)
    # Zero tolerance passes only a bit-exact backend, and the exit code follows the verdict.
    assert strict["passed"] is (strict["max_abs_error"] == 0.0)
    assert code == (0 if strict["passed"] else 1)
    with np.load(release_with_reference / "reference.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["out__actions"] += 1.0
    with (release_with_reference / "reference.npz").open("wb") as handle:
        np.savez(handle, **arrays)
    assert main(["parity", "--release", str(release_with_reference)]) == 1
    assert json.loads(capsys.readouterr().out)["passed"] is False
