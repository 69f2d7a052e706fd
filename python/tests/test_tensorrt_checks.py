"""TensorRT engine checks that need no GPU: dtype mapping and binding validation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from jetpolicy.common.errors import BackendError
from jetpolicy.common.manifest import load_manifest
from jetpolicy.robot.backends.tensorrt_backend import TensorRTBackend, check_engine_bindings, numpy_dtype


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
