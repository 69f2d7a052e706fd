"""TensorRT backend (Jetson): a deserialized engine, pinned host buffers, one CUDA stream.

`tensorrt` comes from JetPack and exists only on the robot, so it is imported inside the
constructor; the CUDA side is JetPack's libcudart through `cuda_runtime`. The checks on the
engine's I/O are plain functions, testable anywhere. The engine API used (num_io_tensors,
get_tensor_name/mode/shape/dtype, set_tensor_address, execute_async_v3, and for engines built with
an optimisation profile IExecutionContext.set_input_shape/get_tensor_shape) exists from TensorRT 8.5
(JetPack 5.1) on, so one code path serves 8.5, 8.6 and 10.x.

An engine built with dynamic dims (-1, from a model with a dynamic batch axis and the manifest's
`tensorrt.profiles`) is run at the manifest's fixed shape: it is set once on the context before
anything is allocated, so the buffers, the addresses and a captured CUDA graph never change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from jetpolicy.common.errors import BackendError
from jetpolicy.common.manifest import PolicyManifest, TensorSpec
from jetpolicy.robot.backends.base import TENSORRT_FIX
from jetpolicy.robot.backends.cuda_runtime import (
    CudaGraph,
    CudaRuntime,
    CudaStream,
    DeviceBuffer,
    PinnedArray,
    load_cuda_runtime,
)

__all__ = [
    "TRT_DTYPES",
    "EngineIO",
    "TensorRTBackend",
    "check_engine_bindings",
    "dynamic_input_shapes",
    "numpy_dtype",
]

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


def dynamic_input_shapes(
    engine_io: Sequence[EngineIO], fixed_shapes: Mapping[str, Sequence[int]]
) -> Tuple[Dict[str, List[int]], List[str]]:
    """The shape to set on each input the engine leaves dynamic (-1), taken from ``fixed_shapes``
    (the manifest's), and every contradiction: a fixed shape of another rank, or one that differs
    from a dim the engine fixes. An input with no fixed shape is left out (check_engine_bindings
    then reports its dynamic dims)."""
    shapes: Dict[str, List[int]] = {}
    problems: List[str] = []
    for name, mode, shape, _ in engine_io:
        if mode != "input" or all(d >= 0 for d in shape) or name not in fixed_shapes:
            continue
        fixed = [int(d) for d in fixed_shapes[name]]
        if len(fixed) != len(shape) or any(d >= 0 and d != f for d, f in zip(shape, fixed)):
            problems.append(
                f"input '{name}': the manifest's shape {fixed} does not fit the engine's {list(shape)}"
            )
            continue
        shapes[name] = fixed
    return shapes, problems


def _import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendError(f"TensorRT backend needs tensorrt ({exc})", TENSORRT_FIX) from exc
    return trt


class TensorRTBackend:
    """Runs a serialized TensorRT engine with execute_async_v3 on one CUDA stream.

    Host buffers are page-locked (DMA straight from them, no staging copy) and device buffers are
    allocated once; tensor addresses are set once. With `use_cuda_graph` the H2D copies, the
    enqueue and the D2H copies are captured into one CUDA graph and replayed each tick, which cuts
    the CPU launch cost; this needs a static engine (no shape changes, no data-dependent shapes).
    The CUDA side is libcudart through ctypes (`cuda_runtime`). All calls must come from the
    constructing thread: it is the one whose current device is set here.
    """

    name = "tensorrt"

    def __init__(
        self,
        engine_path: Union[str, Path],
        use_cuda_graph: bool = False,
        cuda: Optional[CudaRuntime] = None,
        tensorrt_module: Any = None,
        fixed_shapes: Optional[Mapping[str, Sequence[int]]] = None,
    ) -> None:
        self._path = Path(engine_path)
        self._fixed_shapes: Mapping[str, Sequence[int]] = fixed_shapes or {}
        if not self._path.is_file():
            raise BackendError(
                f"engine {self._path} does not exist", "build it with the tensorrt_engine role"
            )
        trt = tensorrt_module if tensorrt_module is not None else _import_tensorrt()
        self._cuda = cuda if cuda is not None else load_cuda_runtime()
        self._cuda.use_device(0)
        self._host: Dict[str, PinnedArray] = {}
        self._device: Dict[str, DeviceBuffer] = {}
        self._stream: Optional[CudaStream] = None
        self._graph: Optional[CudaGraph] = None
        self._context: Any = None
        self._engine: Any = None
        try:
            self._setup(trt, use_cuda_graph)
        except Exception:
            self.close()
            raise

    def _setup(self, trt: Any, use_cuda_graph: bool) -> None:
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
        self._context = self._engine.create_execution_context()
        engine_io = self._set_fixed_shapes(engine_io)
        problems = check_engine_bindings(engine_io)
        if problems:
            raise BackendError(
                f"engine {self._path}: " + "; ".join(problems), "rebuild it from the validated ONNX"
            )
        self._stream = self._cuda.stream()
        self._inputs: List[TensorSpec] = []
        self._outputs: List[TensorSpec] = []
        for tname, mode, shape, dtype in engine_io:
            spec = TensorSpec(
                tname,
                [int(d) for d in shape],
                numpy_dtype(dtype),
                "observation" if mode == "input" else "action",
            )
            (self._inputs if mode == "input" else self._outputs).append(spec)
            self._host[tname] = self._cuda.pinned_array(spec.shape, spec.dtype)
            self._device[tname] = self._cuda.device_buffer(self._host[tname].nbytes)
            self._context.set_tensor_address(tname, self._device[tname].pointer)
        self._out_views = {s.name: self._host[s.name].array for s in self._outputs}
        # One plain run first: TensorRT does lazy initialisation on the first enqueue, which must
        # not happen inside a graph capture.
        self._enqueue()
        self._stream.synchronize()
        if use_cuda_graph:
            self._graph = self._stream.capture(self._enqueue)

    def _set_fixed_shapes(self, engine_io: List[EngineIO]) -> List[EngineIO]:
        """Set the manifest's shape on each dynamic input; the I/O with the shapes now in force
        (the outputs' as the context infers them from the inputs')."""
        shapes, problems = dynamic_input_shapes(engine_io, self._fixed_shapes)
        if problems:
            raise BackendError(
                f"engine {self._path}: " + "; ".join(problems),
                "rebuild the engine from this release's policy.onnx (tensorrt_engine role)",
            )
        if not shapes:
            return engine_io
        for tname, shape in shapes.items():
            if not self._context.set_input_shape(tname, tuple(shape)):
                raise BackendError(
                    f"engine {self._path}: input '{tname}' shape {shape} is outside the engine's "
                    f"optimisation profile{self._profile_text(tname)}",
                    "rebuild the engine with a profile whose min..max contains the manifest's shape "
                    "(tensorrt.profiles in policy.json, or tensorrt_engine_shapes)",
                )
        return [
            (tname, mode, tuple(shapes[tname]) if tname in shapes else tuple(shape), dtype)
            if mode == "input"
            else (tname, mode, tuple(self._context.get_tensor_shape(tname)), dtype)
            for tname, mode, shape, dtype in engine_io
        ]

    def _profile_text(self, tname: str) -> str:
        # get_tensor_profile_shape(name, profile) -> [min, opt, max] (TensorRT 8.5+).
        try:
            low, _opt, high = self._engine.get_tensor_profile_shape(tname, 0)
        except (AttributeError, TypeError, ValueError):
            return ""
        return f" (min {list(low)}, max {list(high)})"

    def _enqueue(self) -> None:
        assert self._stream is not None
        for spec in self._inputs:
            self._stream.copy_to_device(self._device[spec.name], self._host[spec.name])
        if not self._context.execute_async_v3(self._stream.handle):
            raise BackendError(
                f"TensorRT execute_async_v3 failed for {self._path}", "check the kernel log (dmesg)"
            )
        for spec in self._outputs:
            self._stream.copy_to_host(self._host[spec.name], self._device[spec.name])

    @property
    def inputs(self) -> List[TensorSpec]:
        return list(self._inputs)

    @property
    def outputs(self) -> List[TensorSpec]:
        return list(self._outputs)

    @property
    def uses_cuda_graph(self) -> bool:
        return self._graph is not None

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        assert self._stream is not None
        for spec in self._inputs:
            np.copyto(self._host[spec.name].array, feeds[spec.name], casting="same_kind")
        if self._graph is not None:
            self._graph.launch(self._stream)
        else:
            self._enqueue()
        self._stream.synchronize()
        return self._out_views

    def close(self) -> None:
        """Free everything in reverse order; safe to call twice and after a failed setup."""
        if self._graph is not None:
            self._graph.destroy()
            self._graph = None
        self._context = None
        self._engine = None
        if self._stream is not None:
            self._stream.destroy()
            self._stream = None
        for buffer in self._device.values():
            buffer.free()
        for pinned in self._host.values():
            pinned.free()
        self._device.clear()
        self._host.clear()
