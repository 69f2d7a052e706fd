"""Choosing the inference backend, with a one-line reason the runner and reports can show.

`auto` picks TensorRT only when every part it needs is there: the engine file, `tensorrt`
importable, the CUDA runtime loadable with a GPU visible, and the engine's build record (the
sidecar the `trtexec` module writes beside each cached engine) naming this robot's TensorRT
version and device. Otherwise it runs ONNX Runtime and the reason names the missing part.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple, Union

from jetpolicy.common.errors import BackendError
from jetpolicy.robot.backends.base import BACKEND_KINDS, TENSORRT_FIX, InferenceBackend

__all__ = [
    "BACKEND_KINDS",
    "DEVICE_MODEL_FILE",
    "TENSORRT_FIX",
    "cuda_unavailable_reason",
    "engine_build_record",
    "engine_mismatch",
    "read_device_model",
    "same_tensorrt_release",
    "select_backend",
    "tensorrt_import_error",
    "tensorrt_unavailable_reason",
]

PathLike = Union[str, Path]
# Tensor name -> the shape the runner feeds (the manifest's), for models and engines with dynamic dims.
FixedShapes = Optional[Mapping[str, Sequence[int]]]
DEVICE_MODEL_FILE = Path("/proc/device-tree/model")


def tensorrt_import_error() -> Optional[str]:
    """None when `tensorrt` imports, else the import error text (used as the reason)."""
    try:
        importlib.import_module("tensorrt")
    except ImportError as exc:
        return str(exc)
    return None


def cuda_unavailable_reason() -> Optional[str]:
    """None when libcudart loads and sees a GPU, else what is missing."""
    from jetpolicy.robot.backends.cuda_runtime import load_cuda_runtime

    try:
        runtime = load_cuda_runtime()
        count = runtime.device_count()
    except BackendError as exc:
        return str(exc)
    return None if count > 0 else f"{runtime.library} sees no GPU"


def read_device_model(path: Path = DEVICE_MODEL_FILE) -> Optional[str]:
    """The board model the device tree names (what the trtexec module records), or None."""
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return None
    return text.replace("\x00", "").strip() or None


def engine_build_record(engine: Path) -> Optional[Mapping[str, Any]]:
    """The build record of the cached engine behind ``engine`` (a per-release link), or None.

    The trtexec module writes ``<cache key>.engine`` and ``<cache key>.json`` side by side;
    releases link to the engine, so the record sits beside the link's target.
    """
    record = engine.resolve().with_suffix(".json")
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def same_tensorrt_release(recorded: str, running: str) -> bool:
    """Engines are bound to TensorRT's major.minor.patch; the build number does not matter."""
    return recorded.split(".")[:3] == running.split(".")[:3]


def engine_mismatch(
    record: Optional[Mapping[str, Any]], tensorrt_version: str, device_model: Optional[str]
) -> Optional[str]:
    """Why an engine with this build record cannot run here, or None when it was built for here."""
    if record is None:
        return "the engine has no build record (rebuild it with the tensorrt_engine role)"
    built_with = str(record.get("tensorrt_version") or "")
    if not built_with or not same_tensorrt_release(built_with, tensorrt_version):
        built_with = built_with or "unknown"
        return f"the engine was built with TensorRT {built_with}, this robot has {tensorrt_version}"
    built_on = record.get("device_model")
    if built_on and device_model and built_on != device_model:
        return f"the engine was built on {built_on}, this robot is {device_model}"
    return None


def tensorrt_unavailable_reason(
    engine: Path,
    cuda_reason: Callable[[], Optional[str]] = cuda_unavailable_reason,
    device_model: Callable[[], Optional[str]] = read_device_model,
) -> Optional[str]:
    """None when every part of the TensorRT path is there, else the first part missing."""
    if not engine.is_file():
        return f"engine {engine} does not exist"
    error = tensorrt_import_error()
    if error is not None:
        return f"tensorrt not importable ({error})"
    missing_cuda = cuda_reason()
    if missing_cuda is not None:
        return f"CUDA runtime not usable ({missing_cuda})"
    import tensorrt

    return engine_mismatch(engine_build_record(engine), str(tensorrt.__version__), device_model())


def _onnxruntime(model_path: PathLike, fixed_shapes: FixedShapes) -> InferenceBackend:
    from jetpolicy.robot.backends.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(model_path, fixed_shapes=fixed_shapes)


def _tensorrt(engine_path: PathLike, use_cuda_graph: bool, fixed_shapes: FixedShapes) -> InferenceBackend:
    from jetpolicy.robot.backends.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(engine_path, use_cuda_graph=use_cuda_graph, fixed_shapes=fixed_shapes)


def select_backend(
    kind: str,
    model_path: PathLike,
    engine_path: Optional[PathLike] = None,
    use_cuda_graph: bool = False,
    fixed_shapes: FixedShapes = None,
) -> Tuple[InferenceBackend, str]:
    """Load the backend asked for; `auto` prefers TensorRT only when it can actually run.

    `fixed_shapes` (the manifest's tensor shapes) is the shape a model or engine with dynamic dims
    is run at."""
    if kind not in BACKEND_KINDS:
        raise BackendError(f"unknown backend {kind!r}", f"use one of {', '.join(BACKEND_KINDS)}")
    engine = Path(engine_path) if engine_path is not None else None
    if kind == "onnxruntime":
        return _onnxruntime(model_path, fixed_shapes), "onnxruntime: requested"
    if kind == "tensorrt":
        if engine is None or not engine.is_file():
            what = "no engine given" if engine is None else f"engine {engine} does not exist"
            raise BackendError(
                f"tensorrt backend requested but {what}",
                "build the engine with the tensorrt_engine role (trtexec) and pass --engine",
            )
        error = tensorrt_import_error()
        if error is not None:
            raise BackendError(
                f"tensorrt backend requested but tensorrt is not importable ({error})", TENSORRT_FIX
            )
        return _tensorrt(engine, use_cuda_graph, fixed_shapes), f"tensorrt: requested, engine {engine}"
    if engine is None:
        return _onnxruntime(model_path, fixed_shapes), "onnxruntime: no engine given"
    missing = tensorrt_unavailable_reason(engine)
    if missing is not None:
        return _onnxruntime(model_path, fixed_shapes), f"onnxruntime: {missing}"
    # Every part is there: an engine that still fails to load is a broken deployment, not a
    # reason to fall back, so its error goes to the runner.
    return _tensorrt(engine, use_cuda_graph, fixed_shapes), (
        f"tensorrt: engine {engine} built for this TensorRT and device, CUDA runtime loaded"
    )
