"""The example policy builder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from jetpolicy import __version__
from jetpolicy.common.manifest import load_manifest, sha256_file
from jetpolicy.controller.example import build_example


def test_manifest_contents(example_release: Path) -> None:
    """The manifest has the sha of the file, provenance, normalisation, limits and safe action."""
    manifest = load_manifest(example_release / "policy.json")
    assert manifest.sha256 == sha256_file(example_release / "policy.onnx")
    assert manifest.created_by == f"jetpolicy example {__version__}"
    assert manifest.created_at.endswith("Z")
    assert manifest.control_rate_hz == 100.0
    assert len(manifest.normalization["obs"].std) == 48
    assert manifest.action["actions"].low == [-1.0] * 12
    assert manifest.safe_action["actions"] == [0.0] * 12


def test_deterministic_per_seed(tmp_path: Path, example_release: Path) -> None:
    """The same seed gives byte-identical ONNX; another seed gives different weights."""
    same = build_example(tmp_path / "a", obs=48, hidden=[32], act=12, seed=0)
    other = build_example(tmp_path / "b", obs=48, hidden=[32], act=12, seed=1)
    assert same.sha256 == load_manifest(example_release / "policy.json").sha256
    assert other.sha256 != same.sha256


def test_recurrent_variant(recurrent_release: Path) -> None:
    """--recurrent exports h_in/h_out as a state pair with static shapes."""
    manifest = load_manifest(recurrent_release / "policy.json")
    assert [(p.input, p.output) for p in manifest.state] == [("h_in", "h_out")]
    assert manifest.input("h_in").shape == [1, 16]
    session = ort.InferenceSession(str(recurrent_release / "policy.onnx"), providers=["CPUExecutionProvider"])
    actions, h_out = session.run(
        None, {"obs": np.ones((1, 8), np.float32), "h_in": np.zeros((1, 16), np.float32)}
    )
    assert actions.shape == (1, 3) and h_out.shape == (1, 16)


def test_cli_writes_release(tmp_path: Path, capsys: object) -> None:
    """`jetpolicy example` writes both files with the requested sizes and rate."""
    from jetpolicy.cli import main

    assert (
        main(
            [
                "example",
                "--out",
                str(tmp_path),
                "--hidden",
                "16",
                "--obs",
                "6",
                "--act",
                "2",
                "--rate-hz",
                "400",
            ]
        )
        == 0
    )
    manifest = load_manifest(tmp_path / "policy.json")
    assert manifest.control_rate_hz == 400.0
    assert manifest.input("obs").shape == [1, 6]
    assert (tmp_path / "policy.onnx").is_file()
