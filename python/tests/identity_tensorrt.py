"""A test double of the `tensorrt` module: an "engine" whose enqueue copies its input to its output.

There is no TensorRT on the lent GPU machine (nor here), but the backend's CUDA layer (pinned and
device buffers, copies, the stream, graph capture and replay) is real and must run on a GPU. This
double stands in for the only part that is TensorRT's own: its execution context enqueues a real
device-to-device copy on the stream it is given, so the whole TensorRTBackend path runs on the GPU
and its output can be checked (output == input). It implements only the TensorRT API names the
backend calls (Logger, Runtime.deserialize_cuda_engine, ICudaEngine.num_io_tensors /
get_tensor_name / get_tensor_mode / get_tensor_shape / get_tensor_dtype /
create_execution_context, IExecutionContext.set_tensor_address / execute_async_v3). Never shipped.
"""

from __future__ import annotations

import ctypes
import enum
from typing import Dict, Sequence, Tuple

from jetpolicy.robot.backends.cuda_runtime import CudaRuntime

__version__ = "10.3.0.30"
IDENTITY_ENGINE_MAGIC = b"identity-engine"


class TensorIOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1


class Logger:
    WARNING = 2

    def __init__(self, severity: int) -> None:
        self.severity = severity


class IdentityContext:
    def __init__(self, runtime: CudaRuntime, nbytes: int) -> None:
        self._runtime = runtime
        self._nbytes = nbytes
        self.addresses: Dict[str, int] = {}
        self.enqueues = 0

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.enqueues += 1
        self._runtime.call(
            "cudaMemcpyAsync",
            ctypes.c_void_p(self.addresses["actions"]),
            ctypes.c_void_p(self.addresses["obs"]),
            self._nbytes,
            3,  # cudaMemcpyDeviceToDevice
            ctypes.c_void_p(stream_handle),
        )
        return True


class IdentityEngine:
    def __init__(self, runtime: CudaRuntime, shape: Tuple[int, ...], dtype: DataType) -> None:
        self._runtime = runtime
        self._shape = shape
        self._dtype = dtype
        self._names = ["obs", "actions"]
        self.contexts: list[IdentityContext] = []

    @property
    def num_io_tensors(self) -> int:
        return len(self._names)

    def get_tensor_name(self, index: int) -> str:
        return self._names[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name == "obs" else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name: str) -> Sequence[int]:
        return self._shape

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._dtype

    def create_execution_context(self) -> IdentityContext:
        itemsize = 4 if self._dtype is DataType.FLOAT else 2
        count = 1
        for dim in self._shape:
            count *= dim
        context = IdentityContext(self._runtime, count * itemsize)
        self.contexts.append(context)
        return context


class IdentityTensorRT:
    """The module-shaped double: pass it as `tensorrt_module` to TensorRTBackend."""

    TensorIOMode = TensorIOMode
    DataType = DataType
    Logger = Logger
    __version__ = __version__

    def __init__(self, runtime: CudaRuntime, shape: Tuple[int, ...] = (1, 12), half: bool = False) -> None:
        self._runtime = runtime
        self.engine = IdentityEngine(runtime, shape, DataType.HALF if half else DataType.FLOAT)

    def Runtime(self, logger: Logger) -> IdentityTensorRT:
        return self

    def deserialize_cuda_engine(self, blob: bytes) -> IdentityEngine | None:
        return self.engine if blob == IDENTITY_ENGINE_MAGIC else None
