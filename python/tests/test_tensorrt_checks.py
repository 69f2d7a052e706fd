"""TensorRT engine checks that need no GPU: dtype mapping, binding validation, and dynamic-shape
engines run at the manifest's fixed shape (identity engine double over host memory)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Tuple

import numpy as np
import pytest
from host_cuda import HostCudaRuntime
from identity_tensorrt import IDENTITY_ENGINE_MAGIC, IdentityTensorRT

from jetpolicy.common.errors import BackendError
from jetpolicy.common.manifest import load_manifest
from jetpolicy.robot.backends.tensorrt_backend import (
    TensorRTBackend,
    check_engine_bindings,
    dynamic_input_shapes,
    numpy_dtype,
)


def test_dtype_names_map_to_numpy() -> None:
    """TensorRT DataType names (bare or as str(trt.float32)) map to numpy names; bf16 is refused."""
    assert numpy_dtype("FLOAT") == "float32"
    assert numpy_dtype("DataType.HALF") == "float16"
    assert numpy_dtype("DataType.INT64") == "int64"
    with pytest.raises(BackendError, match="BF16"):
        numpy_dtype("DataType.BF16")


def test_matching_engine_has_no_problems(example_release: Path) -> None:
    """An engine whose I/O equals the manifest passes."""
    manifest = load_manifest(example_release / "policy.json")
    io = [("obs", "input", (1, 48), "DataType.FLOAT"), ("actions", "output", (1, 12), "DataType.FLOAT")]
    assert check_engine_bindings(io, manifest) == []


def test_every_problem_reported(example_release: Path) -> None:
    """Dynamic dims, missing/extra tensors and shape differences are all listed."""
    manifest = load_manifest(example_release / "policy.json")
    io = [
        ("obs", "input", (-1, 48), "DataType.FLOAT"),
        ("extra", "input", (1, 3), "DataType.FLOAT"),
        ("out", "output", (1, 12), "DataType.BF16"),
    ]
    problems = check_engine_bindings(io, manifest)
    assert (
        "input 'obs' has dynamic dims [-1, 48]; rebuild the engine from an ONNX with static shapes"
        in problems
    )
    assert "input 'obs' shape: engine [-1, 48] vs manifest [1, 48]" in problems
    assert "input 'extra' is in the engine but not in the manifest" in problems
    assert "output 'actions' is in the manifest but not in the engine" in problems
    assert "output 'out' has dtype DataType.BF16, which numpy cannot hold" in problems
    assert len(problems) == 6  # plus 'out' extra output


def test_backend_without_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Constructing the backend without tensorrt gives the JetPack fix, not an ImportError."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"engine")
    with pytest.raises(BackendError, match="needs tensorrt") as info:
        TensorRTBackend(engine)
    assert "python3-libnvinfer" in info.value.fix


def test_backend_without_engine_file(tmp_path: Path) -> None:
    """A missing engine file is named before anything is imported or allocated."""
    with pytest.raises(BackendError, match=r"x\.engine does not exist") as info:
        TensorRTBackend(tmp_path / "x.engine")
    assert "tensorrt_engine role" in info.value.fix


# ---- Engines built with an optimisation profile (dynamic batch), run at the manifest's shape -----
# The identity engine double (identity_tensorrt.py) over host memory (host_cuda.py): no GPU needed.

BATCH_PROFILE = ((1, 12), (4, 12), (8, 12))
FIXED = {"obs": [1, 12], "actions": [1, 12]}


def _identity_backend(
    tmp_path: Path, fixed_shapes: Any, profile: Any = BATCH_PROFILE, use_cuda_graph: bool = False
) -> Tuple[TensorRTBackend, IdentityTensorRT]:
    engine = tmp_path / "identity.engine"
    engine.write_bytes(IDENTITY_ENGINE_MAGIC)
    runtime: Any = HostCudaRuntime()
    trt = IdentityTensorRT(runtime, profile=profile)
    backend = TensorRTBackend(
        engine, use_cuda_graph=use_cuda_graph, cuda=runtime, tensorrt_module=trt, fixed_shapes=fixed_shapes
    )
    return backend, trt


@pytest.mark.parametrize("use_graph", [False, True])
def test_dynamic_engine_runs_at_the_manifest_shape(tmp_path: Path, use_graph: bool) -> None:
    """An engine whose batch axis is -1 gets the manifest's shape set once on its context before
    the buffers are sized; its I/O then reports that shape and each run returns the input."""
    backend, trt = _identity_backend(tmp_path, FIXED, use_cuda_graph=use_graph)
    assert trt.engine.get_tensor_shape("obs") == (-1, 12)
    context = trt.engine.contexts[0]
    assert context.set_shapes == [("obs", (1, 12))]
    assert backend.inputs[0].shape == [1, 12] and backend.outputs[0].shape == [1, 12]
    for value in (1.0, 2.5):
        obs = np.full((1, 12), value, dtype=np.float32)
        np.testing.assert_array_equal(backend.run({"obs": obs})["actions"], obs)
    assert backend.uses_cuda_graph is use_graph
    backend.close()


def test_static_engine_sets_no_shape(tmp_path: Path) -> None:
    """A static engine is left alone: set_input_shape is never called."""
    backend, trt = _identity_backend(tmp_path, FIXED, profile=None)
    assert trt.engine.contexts[0].set_shapes == []
    assert backend.inputs[0].shape == [1, 12]
    backend.close()


def test_dynamic_engine_without_fixed_shapes_is_refused(tmp_path: Path) -> None:
    """Without the manifest's shapes a dynamic engine cannot be sized: its -1 dims are named."""
    with pytest.raises(BackendError, match=r"input 'obs' has dynamic dims \[-1, 12\]"):
        _identity_backend(tmp_path, None)


def test_manifest_shape_outside_the_profile_is_refused(tmp_path: Path) -> None:
    """A manifest shape the engine's profile does not cover (set_input_shape is False) names the
    shape, the profile's range and the rebuild fix."""
    with pytest.raises(BackendError) as info:
        _identity_backend(tmp_path, {"obs": [16, 12], "actions": [16, 12]})
    assert "input 'obs' shape [16, 12] is outside the engine's optimisation profile" in info.value.cause
    assert "(min [1, 12], max [8, 12])" in info.value.cause
    assert "tensorrt.profiles" in info.value.fix


def test_manifest_shape_that_contradicts_a_fixed_dim() -> None:
    """A fixed shape of another rank, or differing on a dim the engine fixes, is a problem; inputs
    that are static or have no fixed shape are left out."""
    io = [
        ("obs", "input", (-1, 12), "DataType.FLOAT"),
        ("h", "input", (-1, 4), "DataType.FLOAT"),
        ("s", "input", (1, 3), "DataType.FLOAT"),
        ("u", "input", (-1, 2), "DataType.FLOAT"),
        ("actions", "output", (-1, 12), "DataType.FLOAT"),
    ]
    fixed = {"obs": [2, 12], "h": [1, 5], "s": [1, 3], "actions": [1, 12]}
    shapes, problems = dynamic_input_shapes(io, fixed)
    assert shapes == {"obs": [2, 12]}
    assert problems == ["input 'h': the manifest's shape [1, 5] does not fit the engine's [-1, 4]"]
