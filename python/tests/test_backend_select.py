"""Backend selection: auto falls back to ONNX Runtime and says why; explicit TensorRT fails clearly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from jetpolicy.common.errors import BackendError
from jetpolicy.robot.backends import select_backend


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import tensorrt` fail even on a machine that has it."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def test_auto_without_engine(example_release: Path) -> None:
    """auto with no engine picks onnxruntime and says there was no engine."""
    backend, reason = select_backend("auto", example_release / "policy.onnx")
    assert backend.name == "onnxruntime"
    assert reason == "onnxruntime: no engine given"


def test_auto_with_engine_but_no_tensorrt(example_release: Path, tmp_path: Path, no_tensorrt: None) -> None:
    """auto with an engine file but no tensorrt module picks onnxruntime and quotes the import error."""
    engine = tmp_path / "p.engine"
    engine.write_bytes(b"x")
    backend, reason = select_backend("auto", example_release / "policy.onnx", engine)
    assert backend.name == "onnxruntime"
    assert reason.startswith("onnxruntime: tensorrt not importable (")
    assert "tensorrt" in reason[len("onnxruntime: tensorrt") :]


def test_auto_with_missing_engine(example_release: Path, tmp_path: Path) -> None:
    """auto with an engine path that does not exist names the path."""
    _, reason = select_backend("auto", example_release / "policy.onnx", tmp_path / "gone.engine")
    assert reason.startswith("onnxruntime: engine ") and "gone.engine" in reason


def test_tensorrt_requested_without_library(example_release: Path, tmp_path: Path, no_tensorrt: None) -> None:
    """Explicit tensorrt without the library fails with the JetPack install fix."""
    engine = tmp_path / "p.engine"
    engine.write_bytes(b"x")
    with pytest.raises(BackendError, match="not importable") as info:
        select_backend("tensorrt", example_release / "policy.onnx", engine)
    assert "python3-libnvinfer" in info.value.fix
    assert "--system-site-packages" in info.value.fix


def test_tensorrt_requested_without_engine(example_release: Path) -> None:
    """Explicit tensorrt without an engine says to build one."""
    with pytest.raises(BackendError, match="no engine given") as info:
        select_backend("tensorrt", example_release / "policy.onnx")
    assert "trtexec" in info.value.fix


def test_unknown_kind(example_release: Path) -> None:
    """An unknown backend name lists the valid ones."""
    with pytest.raises(BackendError) as info:
        select_backend("cuda", example_release / "policy.onnx")
    assert "onnxruntime" in info.value.fix
