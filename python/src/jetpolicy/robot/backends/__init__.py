"""Inference backends: ONNX Runtime everywhere, TensorRT on Jetson (imported lazily)."""

from __future__ import annotations

from jetpolicy.robot.backends.base import InferenceBackend
from jetpolicy.robot.backends.select import BACKEND_KINDS, select_backend

__all__ = ["BACKEND_KINDS", "InferenceBackend", "select_backend"]

