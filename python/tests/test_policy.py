"""Policy: normalisation, action transform, recurrent state, safe action, I/O checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
import pytest

from jetpolicy.common.errors import PolicyValidationError
from jetpolicy.common.manifest import load_manifest, manifest_from_dict
from jetpolicy.robot.backends.onnxruntime_backend import OnnxRuntimeBackend
from jetpolicy.robot.policy import Policy, load_policy


def _session(release: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(release / "policy.onnx"), providers=["CPUExecutionProvider"])


def test_normalisation_and_action_transform(example_release: Path) -> None:
    """step() feeds (obs-mean)/std to the model and returns clip(raw*scale+offset, low, high)."""
    policy = load_policy(example_release)
    manifest = policy.manifest
    norm = manifest.normalization["obs"]
    tr = manifest.action["actions"]
    obs = np.random.default_rng(3).standard_normal((1, 48)).astype(np.float32) * 5
    normalized = ((obs - np.float32(norm.mean)) / np.float32(norm.std)).astype(np.float32)
    raw = _session(example_release).run(None, {"obs": normalized})[0]
    expected = np.clip(raw * np.float32(tr.scale) + np.float32(tr.offset), tr.low, tr.high)
    got = policy.step({"obs": obs})["actions"]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_clipping_applies(example_release: Path, copy_release: Callable[[Path], Path]) -> None:
    """With a huge scale every action is pushed to the limits."""
    release = copy_release(example_release)
    raw = json.loads((release / "policy.json").read_text())
    raw["action"]["actions"]["scale"] = [1e6] * 12
    raw["action"]["actions"]["low"] = [-0.25] * 12
    raw["action"]["actions"]["high"] = [0.5] * 12
    (release / "policy.json").write_text(json.dumps(raw))
    actions = load_policy(release).step({"obs": np.ones((1, 48), np.float32)})["actions"]
    assert set(np.unique(actions)) <= {np.float32(-0.25), np.float32(0.5)}


def test_step_reuses_buffers(example_release: Path) -> None:
    """step() returns the same preallocated arrays every tick."""
    policy = load_policy(example_release)
    a = policy.step({"obs": np.zeros((1, 48), np.float32)})["actions"]
    b = policy.step({"obs": np.ones((1, 48), np.float32)})["actions"]
    assert a is b


def test_state_carried_and_reset(recurrent_release: Path) -> None:
    """h_out of one tick is h_in of the next; reset_state() restarts from zeros."""
    policy = load_policy(recurrent_release)
    session = _session(recurrent_release)
    manifest = policy.manifest
    mean = np.float32(manifest.normalization["obs"].mean)
    std = np.float32(manifest.normalization["obs"].std)
    rng = np.random.default_rng(0)
    obs_seq = [rng.standard_normal((1, 8)).astype(np.float32) for _ in range(5)]
    h = np.zeros((1, 16), np.float32)
    raws = []
    for obs in obs_seq:
        raw, h = session.run(None, {"obs": ((obs - mean) / std).astype(np.float32), "h_in": h})
        raws.append(raw)
    got = [policy.step_raw({"obs": o})["actions"].copy() for o in obs_seq]
    np.testing.assert_allclose(np.stack(got), np.stack(raws), atol=1e-5)
    assert not np.allclose(got[0], got[1])  # the state changes the answer
    policy.reset_state()
    again = policy.step_raw({"obs": obs_seq[0]})["actions"]
    np.testing.assert_allclose(again, raws[0], atol=1e-6)


def test_safe_action_zeros_clipped(example_release: Path, copy_release: Callable[[Path], Path]) -> None:
    """The safe action defaults to zeros and is clipped into the limits, and is read-only."""
    release = copy_release(example_release)
    raw = json.loads((release / "policy.json").read_text())
    del raw["safe_action"]
    raw["action"]["actions"]["low"] = [0.1] * 12
    (release / "policy.json").write_text(json.dumps(raw))
    safe = load_policy(release).safe_action()["actions"]
    np.testing.assert_array_equal(safe, np.full((1, 12), 0.1, np.float32))
    with pytest.raises(ValueError):
        safe[0, 0] = 5.0


def test_properties(example_release: Path) -> None:
    """Specs and backend name/reason are exposed for the runner."""
    policy = load_policy(example_release)
    assert [s.name for s in policy.observation_specs] == ["obs"]
    assert [s.name for s in policy.action_specs] == ["actions"]
    assert policy.backend_name == "onnxruntime"
    assert policy.backend_reason == "onnxruntime: no engine given"


def test_manifest_mismatch_lists_every_problem(example_release: Path) -> None:
    """A manifest that disagrees with the model in names and shapes is refused with all differences."""
    raw = json.loads((example_release / "policy.json").read_text())
    raw["inputs"][0]["name"] = "observation"
    raw["outputs"][0]["shape"] = [1, 6]
    for key in ("normalization", "action", "safe_action"):
        raw.pop(key)
    manifest = manifest_from_dict(raw)
    with pytest.raises(PolicyValidationError) as info:
        Policy(manifest, OnnxRuntimeBackend(example_release / "policy.onnx"))
    text = "\n".join(info.value.problems)
    assert "input 'observation' is in the manifest but not" in text
    assert "input 'obs' is in the onnxruntime model but not in the manifest" in text
    assert "output 'actions' shape: model [1, 12] vs manifest [1, 6]" in text


def test_sha_mismatch_refused(example_release: Path, copy_release: Callable[[Path], Path]) -> None:
    """load_policy refuses a model whose bytes differ from the manifest's sha256."""
    release = copy_release(example_release)
    with (release / "policy.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(PolicyValidationError, match="sha256"):
        load_policy(release)
    assert load_manifest(release / "policy.json").sha256  # manifest itself still reads
