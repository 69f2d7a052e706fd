"""TensorRT 10 backend (Jetson): a deserialized engine, pinned host buffers, one CUDA stream.

`tensorrt` and `pycuda` come from JetPack and exist only on the robot, so they are imported inside
the constructor; the checks on the engine's I/O are plain functions, testable anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from jetpolicy.common.errors import BackendError
from jetpolicy.common.manifest import PolicyManifest, TensorSpec
from jetpolicy.robot.backends.base import TENSORRT_FIX

__all__ = ["TRT_DTYPES", "EngineIO", "TensorRTBackend", "check_engine_bindings", "numpy_dtype"]

# (name, "input" | "output", shape, TensorRT DataType name) for one engine I/O tensor.
EngineIO = Tuple[str, str, Sequence[int], str]

# TensorRT DataType member names -> numpy dtype names. BF16/FP8/INT4 have no numpy type: an
# engine using them at its I/O cannot be fed from numpy and is rejected with a clear message.
TRT_DTYPES: Dict[str, str] = {
    "FLOAT": "float32",
    "HALF": "float16",
    "INT8": "int8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "UINT8": "uint8",
}


def numpy_dtype(trt_dtype_name: str) -> str:
    """Numpy dtype name for a TensorRT DataType name (`str(trt.float32)` is `DataType.FLOAT`)."""
    key = trt_dtype_name.rsplit(".", 1)[-1].upper()
    if key not in TRT_DTYPES:
        raise BackendError(
            f"TensorRT I/O dtype {trt_dtype_name} has no numpy equivalent",
            "build the engine with float32 (or fp16) I/O: keep --inputIOFormats/--outputIOFormats at fp32",
        )
    return TRT_DTYPES[key]


def check_engine_bindings(
    engine_io: Sequence[EngineIO], manifest: Optional[PolicyManifest] = None
) -> List[str]:
    """Every problem with an engine's I/O: dynamic dims, unknown dtypes, and (with a manifest)
    missing or extra tensors and shape differences. An empty list means the engine is usable."""
    problems: List[str] = []
    for name, mode, shape, dtype in engine_io:
        if any(d < 0 for d in shape):
            problems.append(
                f"{mode} '{name}' has dynamic dims {list(shape)}; "
                "rebuild the engine from an ONNX with static shapes"
            )
        key = dtype.rsplit(".", 1)[-1].upper()
        if key not in TRT_DTYPES:
            problems.append(f"{mode} '{name}' has dtype {dtype}, which numpy cannot hold")
    if manifest is None:
        return problems
    for mode, declared in (("input", manifest.inputs), ("output", manifest.outputs)):
        have = {name: list(shape) for name, m, shape, _ in engine_io if m == mode}
        want = {s.name: s.shape for s in declared}
        problems += [f"{mode} '{n}' is in the manifest but not in the engine" for n in want if n not in have]
        problems += [f"{mode} '{n}' is in the engine but not in the manifest" for n in have if n not in want]
        problems += [
            f"{mode} '{n}' shape: engine {have[n]} vs manifest {want[n]}"
            for n in want
            if n in have and have[n] != want[n]
        ]
    return problems


def _import_runtime() -> Tuple[Any, Any]:
    try:
        import pycuda.driver as cuda
        import tensorrt as trt
    except ImportError as exc:
        raise BackendError(f"TensorRT backend needs tensorrt and pycuda ({exc})", TENSORRT_FIX) from exc
    return trt, cuda


class TensorRTBackend:
    """Runs a serialized TensorRT 10 engine with execute_async_v3 on one stream.

    Host buffers are page-locked (DMA straight from them, no staging copy) and device buffers are
    allocated once; tensor addresses are set once. With `use_cuda_graph` the H2D copies, the
    enqueue and the D2H copies are captured into one CUDA graph and replayed each tick, which cuts
    the CPU launch cost; this needs a static engine (no shape changes, no data-dependent shapes)
    and pycuda >= 2021.1 (Stream.begin_capture). All calls must come from the constructing thread:
    the CUDA context is pushed here and popped in close().
    """

    name = "tensorrt"

    def __init__(self, engine_path: Union[str, Path], use_cuda_graph: bool = False) -> None:
        trt, cuda = _import_runtime()
        self._path = Path(engine_path)
        if not self._path.is_file():
            raise BackendError(
                f"engine {self._path} does not exist", "build it with the tensorrt_engine role"
            )
        cuda.init()
        self._cuda_ctx = cuda.Device(0).retain_primary_context()
        self._cuda_ctx.push()
        self._cuda = cuda
        try:
            self._setup(trt, cuda, use_cuda_graph)
        except Exception:
            self._cuda_ctx.pop()
            raise

    def _setup(self, trt: Any, cuda: Any, use_cuda_graph: bool) -> None:
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self._path.read_bytes())
        if self._engine is None:
            raise BackendError(
                f"TensorRT cannot deserialize {self._path} (built by another TensorRT version or GPU?)",
                "rebuild the engine on this robot with the tensorrt_engine role",
            )
        engine_io: List[EngineIO] = []
        for index in range(self._engine.num_io_tensors):
            tname = self._engine.get_tensor_name(index)
            is_input = self._engine.get_tensor_mode(tname) == trt.TensorIOMode.INPUT
            engine_io.append(
                (
                    tname,
                    "input" if is_input else "output",
                    tuple(self._engine.get_tensor_shape(tname)),
                    str(self._engine.get_tensor_dtype(tname)),
                )
            )
        problems = check_engine_bindings(engine_io)
        if problems:
            raise BackendError(
                f"engine {self._path}: " + "; ".join(problems), "rebuild it from the validated ONNX"
            )
        self._context = self._engine.create_execution_context()
        self._stream = cuda.Stream()
        self._inputs: List[TensorSpec] = []
        self._outputs: List[TensorSpec] = []
        self._host: Dict[str, np.ndarray] = {}
        self._device: Dict[str, Any] = {}
        for tname, mode, shape, dtype in engine_io:
            spec = TensorSpec(
                tname,
                [int(d) for d in shape],
                numpy_dtype(dtype),
                "observation" if mode == "input" else "action",
            )
            (self._inputs if mode == "input" else self._outputs).append(spec)
            self._host[tname] = cuda.pagelocked_empty(tuple(spec.shape), np.dtype(spec.dtype))
            self._device[tname] = cuda.mem_alloc(self._host[tname].nbytes)
            self._context.set_tensor_address(tname, int(self._device[tname]))
        self._out_views = {s.name: self._host[s.name] for s in self._outputs}
        self._graph_exec: Any = None
        # One plain run first: TensorRT does lazy initialisation on the first enqueue, which must
        # not happen inside a graph capture.
        self._enqueue()
        self._stream.synchronize()
        if use_cuda_graph:
            self._stream.begin_capture()
            try:
                self._enqueue()
            finally:
                graph = self._stream.end_capture()
            self._graph_exec = graph.instantiate()

    def _enqueue(self) -> None:
        for spec in self._inputs:
            self._cuda.memcpy_htod_async(self._device[spec.name], self._host[spec.name], self._stream)
        if not self._context.execute_async_v3(self._stream.handle):
            raise BackendError(
                f"TensorRT execute_async_v3 failed for {self._path}", "check the kernel log (dmesg)"
            )
        for spec in self._outputs:
            self._cuda.memcpy_dtoh_async(self._host[spec.name], self._device[spec.name], self._stream)

    @property
    def inputs(self) -> List[TensorSpec]:
        return list(self._inputs)

    @property
    def outputs(self) -> List[TensorSpec]:
        return list(self._outputs)

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        for spec in self._inputs:
            np.copyto(self._host[spec.name], feeds[spec.name], casting="same_kind")
        if self._graph_exec is not None:
            self._graph_exec.launch(self._stream)
        else:
            self._enqueue()
        self._stream.synchronize()
        return self._out_views

    def close(self) -> None:
        if self._cuda_ctx is None:
            return
        self._graph_exec = None
        for buf in self._device.values():
            buf.free()
        self._device.clear()
        self._context = None
        self._engine = None
        self._cuda_ctx.pop()
        self._cuda_ctx = None
