"""Choosing the inference backend, with a one-line reason the runner and reports can show."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Optional, Tuple, Union

from jetpolicy.common.errors import BackendError
from jetpolicy.robot.backends.base import BACKEND_KINDS, TENSORRT_FIX, InferenceBackend

__all__ = ["BACKEND_KINDS", "TENSORRT_FIX", "select_backend", "tensorrt_import_error"]

PathLike = Union[str, Path]


def tensorrt_import_error() -> Optional[str]:
    """None when `tensorrt` imports, else the import error text (used as the reason)."""
    try:
        importlib.import_module("tensorrt")
    except ImportError as exc:
        return str(exc)
    return None


def _onnxruntime(model_path: PathLike) -> InferenceBackend:
    from jetpolicy.robot.backends.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(model_path)


def _tensorrt(engine_path: PathLike) -> InferenceBackend:
    from jetpolicy.robot.backends.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(engine_path)


def select_backend(
    kind: str, model_path: PathLike, engine_path: Optional[PathLike] = None
) -> Tuple[InferenceBackend, str]:
    """Load the backend asked for; `auto` prefers TensorRT only when it can actually run."""
    if kind not in BACKEND_KINDS:
        raise BackendError(f"unknown backend {kind!r}", f"use one of {', '.join(BACKEND_KINDS)}")
    engine = Path(engine_path) if engine_path is not None else None
    if kind == "onnxruntime":
        return _onnxruntime(model_path), "onnxruntime: requested"
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
        return _tensorrt(engine), f"tensorrt: requested, engine {engine}"
    if engine is None:
        return _onnxruntime(model_path), "onnxruntime: no engine given"
    if not engine.is_file():
        return _onnxruntime(model_path), f"onnxruntime: engine {engine} does not exist"
    error = tensorrt_import_error()
    if error is not None:
        return _onnxruntime(model_path), f"onnxruntime: tensorrt not importable ({error})"
    # An engine that exists but fails to load is a broken deployment, not a reason to fall back.
    return _tensorrt(engine), f"tensorrt: engine {engine} present and tensorrt importable"
