"""ONNX Runtime backend: one single-threaded session bound to preallocated numpy buffers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from jetpolicy.common.errors import BackendError
from jetpolicy.common.manifest import TensorSpec

__all__ = ["ORT_DTYPES", "OnnxRuntimeBackend"]

# ONNX Runtime reports element types as strings; the manifest speaks numpy dtype names.
ORT_DTYPES: Dict[str, str] = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
}


def _static_shape(
    kind: str, name: str, shape: List[Any], path: Path, fixed: Optional[Sequence[int]] = None
) -> List[int]:
    """The model's shape, or for a model with dynamic dims (a dynamic batch axis for a TensorRT
    profile) the manifest's fixed shape where it agrees with every dim the model fixes."""
    agrees = fixed is not None and len(fixed) == len(shape)
    if (
        fixed is not None
        and agrees
        and all(not (isinstance(d, int) and d > 0) or d == f for d, f in zip(shape, fixed))
    ):
        return [int(f) for f in fixed]
    if not all(isinstance(d, int) and d > 0 for d in shape):
        raise BackendError(
            f"model {path}: {kind} '{name}' has dynamic dimensions {shape}",
            "export the policy with static shapes (batch 1, no dynamic_axes)",
        )
    return [int(d) for d in shape]


def _dtype(kind: str, name: str, ort_type: str, path: Path) -> str:
    dtype = ORT_DTYPES.get(ort_type)
    if dtype is None:
        raise BackendError(
            f"model {path}: {kind} '{name}' has unsupported element type {ort_type}",
            f"export it as one of {', '.join(sorted(set(ORT_DTYPES.values())))}",
        )
    return dtype


class OnnxRuntimeBackend:
    """CPU inference through ONNX Runtime with I/O binding into buffers allocated once.

    Threads are pinned to one (intra and inter op, sequential execution): on a robot the control
    loop owns its core, and a thread pool would add wake-up jitter for no gain on small models.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_path: Union[str, Path],
        intra_op_threads: int = 1,
        fixed_shapes: Optional[Mapping[str, Sequence[int]]] = None,
    ) -> None:
        import onnxruntime as ort

        fixed = fixed_shapes or {}
        self._path = Path(model_path)
        if not self._path.is_file():
            raise BackendError(f"model {self._path} does not exist", "check the release directory")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(
                str(self._path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises several unrelated types for bad files
            raise BackendError(
                f"onnxruntime cannot load {self._path}: {exc}",
                "run `jetpolicy validate` on the model and re-export it",
            ) from exc
        self._inputs = [
            TensorSpec(
                name=i.name,
                shape=_static_shape("input", i.name, list(i.shape), self._path, fixed.get(i.name)),
                dtype=_dtype("input", i.name, i.type, self._path),
                role="observation",
            )
            for i in self._session.get_inputs()
        ]
        self._outputs = [
            TensorSpec(
                name=o.name,
                shape=_static_shape("output", o.name, list(o.shape), self._path, fixed.get(o.name)),
                dtype=_dtype("output", o.name, o.type, self._path),
                role="action",
            )
            for o in self._session.get_outputs()
        ]
        self._in_buffers = {s.name: np.zeros(s.shape, dtype=s.dtype) for s in self._inputs}
        self._out_buffers = {s.name: np.zeros(s.shape, dtype=s.dtype) for s in self._outputs}
        # Binding by raw pointer makes ORT read and write our arrays directly: no copies and no
        # allocations inside run(). The arrays live as long as self, so the pointers stay valid.
        self._binding = self._session.io_binding()
        for spec in self._inputs:
            buf = self._in_buffers[spec.name]
            self._binding.bind_input(spec.name, "cpu", 0, buf.dtype, list(buf.shape), buf.ctypes.data)
        for spec in self._outputs:
            buf = self._out_buffers[spec.name]
            self._binding.bind_output(spec.name, "cpu", 0, buf.dtype, list(buf.shape), buf.ctypes.data)

    @property
    def inputs(self) -> List[TensorSpec]:
        return list(self._inputs)

    @property
    def outputs(self) -> List[TensorSpec]:
        return list(self._outputs)

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        for name, buf in self._in_buffers.items():
            np.copyto(buf, feeds[name], casting="same_kind")
        self._session.run_with_iobinding(self._binding)
        return self._out_buffers

    def close(self) -> None:
        self._binding.clear_binding_inputs()
        self._binding.clear_binding_outputs()
