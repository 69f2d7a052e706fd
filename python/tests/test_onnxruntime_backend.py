"""The ONNX Runtime backend: I/O read from the model, bound buffers, clear load errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from jetpolicy.common.errors import BackendError
from jetpolicy.robot.backends.onnxruntime_backend import OnnxRuntimeBackend


def test_reads_io_from_model_and_matches_plain_session(example_release: Path) -> None:
    """Names/shapes/dtypes come from the model, and bound outputs equal a plain session.run."""
    model = example_release / "policy.onnx"
    backend = OnnxRuntimeBackend(model)
    assert [(s.name, s.shape, s.dtype) for s in backend.inputs] == [("obs", [1, 48], "float32")]
    assert [(s.name, s.shape) for s in backend.outputs] == [("actions", [1, 12])]
    obs = np.random.default_rng(0).standard_normal((1, 48)).astype(np.float32)
    expected = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"obs": obs})[0]
    got = backend.run({"obs": obs})["actions"]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    backend.close()


def test_output_buffers_are_reused(example_release: Path) -> None:
    """Each run writes into the same preallocated array (no per-tick allocation) with new values."""
    backend = OnnxRuntimeBackend(example_release / "policy.onnx")
    first = backend.run({"obs": np.zeros((1, 48), np.float32)})["actions"]
    before = first.copy()
    second = backend.run({"obs": np.ones((1, 48), np.float32)})["actions"]
    assert second is first
    assert not np.allclose(before, second)


def test_dynamic_dims_rejected(tmp_path: Path) -> None:
    """A model with a dynamic batch dim fails to load with the input named and the fix."""
    import warnings

    import torch

    path = tmp_path / "dyn.onnx"
    module = torch.nn.Linear(4, 2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(1, 4),),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    with pytest.raises(BackendError, match="'x' has dynamic dimensions") as info:
        OnnxRuntimeBackend(path)
    assert "static shapes" in info.value.fix


def test_corrupt_model_rejected(tmp_path: Path) -> None:
    """Garbage bytes give a BackendError that says to validate and re-export."""
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(BackendError, match="cannot load") as info:
        OnnxRuntimeBackend(path)
    assert "jetpolicy validate" in info.value.fix


def test_dynamic_batch_model_runs_at_the_manifest_shape(example_release: Path, tmp_path: Path) -> None:
    """A model exported with a dynamic batch axis (for a TensorRT batch profile) loads at the
    manifest's fixed shape, through load_policy too, and gives the static model's outputs; a fixed
    shape that contradicts a dim the model fixes is still refused."""
    import json

    import onnx

    from jetpolicy.common.manifest import sha256_file
    from jetpolicy.robot.policy import load_policy

    model = onnx.load(str(example_release / "policy.onnx"))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(model, str(tmp_path / "policy.onnx"))
    raw = json.loads((example_release / "policy.json").read_text())
    raw["sha256"] = sha256_file(tmp_path / "policy.onnx")
    raw["tensorrt"] = {"profiles": {"obs": {"min": [1, 48], "opt": [4, 48], "max": [8, 48]}}}
    (tmp_path / "policy.json").write_text(json.dumps(raw))

    backend = OnnxRuntimeBackend(tmp_path / "policy.onnx", fixed_shapes={"obs": [1, 48], "actions": [1, 12]})
    assert backend.inputs[0].shape == [1, 48] and backend.outputs[0].shape == [1, 12]
    obs = np.random.default_rng(1).standard_normal((1, 48)).astype(np.float32)
    static = OnnxRuntimeBackend(example_release / "policy.onnx")
    np.testing.assert_allclose(backend.run({"obs": obs})["actions"], static.run({"obs": obs})["actions"])
    policy = load_policy(tmp_path, backend="onnxruntime")
    assert policy.step({"obs": obs})["actions"].shape == (1, 12)
    with pytest.raises(BackendError, match="dynamic dimensions"):
        OnnxRuntimeBackend(tmp_path / "policy.onnx", fixed_shapes={"obs": [1, 47], "actions": [1, 12]})
