"""A test double of the `tensorrt` module: an "engine" whose enqueue copies its input to its output.

There is no TensorRT on the lent GPU machine (nor here), but the backend's CUDA layer (pinned and
device buffers, copies, the stream, graph capture and replay) is real and must run on a GPU. This
double stands in for the only part that is TensorRT's own: its execution context enqueues a real
device-to-device copy on the stream it is given, so the whole TensorRTBackend path runs on the GPU
and its output can be checked (output == input). It implements only the TensorRT API names the
backend calls (Logger, Runtime.deserialize_cuda_engine, ICudaEngine.num_io_tensors /
get_tensor_name / get_tensor_mode / get_tensor_shape / get_tensor_dtype / get_tensor_profile_shape /
create_execution_context, IExecutionContext.set_tensor_address / execute_async_v3 /
set_input_shape / get_tensor_shape). With ``profile=(min, opt, max)`` the engine has a dynamic
batch axis (-1, as TensorRT reports an engine built with --minShapes/--optShapes/--maxShapes):
set_input_shape accepts a shape inside the profile and returns False outside it, as TensorRT does,
and the output takes the input's shape. Never shipped.
"""

from __future__ import annotations

import ctypes
import enum
from typing import Dict, List, Optional, Sequence, Tuple

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
    def __init__(self, engine: IdentityEngine) -> None:
        self._engine = engine
        self._runtime = engine._runtime
        self.addresses: Dict[str, int] = {}
        self.enqueues = 0
        self.input_shape: Optional[Tuple[int, ...]] = None
        self.set_shapes: List[Tuple[str, Tuple[int, ...]]] = []

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def set_input_shape(self, name: str, shape: Sequence[int]) -> bool:
        self.set_shapes.append((name, tuple(shape)))
        low, _opt, high = self._engine.profile or (self._engine.shape,) * 3
        if len(shape) != len(low) or not all(a <= d <= b for a, d, b in zip(low, shape, high)):
            return False
        self.input_shape = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> Sequence[int]:
        return self.input_shape if self.input_shape is not None else self._engine.shape

    def execute_async_v3(self, stream_handle: int) -> bool:
        shape = self.get_tensor_shape("obs")
        if any(d < 0 for d in shape):
            return False  # TensorRT refuses to enqueue before every dynamic input shape is set
        count = 1
        for dim in shape:
            count *= dim
        self.enqueues += 1
        self._runtime.call(
            "cudaMemcpyAsync",
            ctypes.c_void_p(self.addresses["actions"]),
            ctypes.c_void_p(self.addresses["obs"]),
            count * (4 if self._engine.dtype is DataType.FLOAT else 2),
            3,  # cudaMemcpyDeviceToDevice
            ctypes.c_void_p(stream_handle),
        )
        return True


Profile = Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]


class IdentityEngine:
    def __init__(
        self, runtime: CudaRuntime, shape: Tuple[int, ...], dtype: DataType, profile: Optional[Profile] = None
    ) -> None:
        self._runtime = runtime
        # Built with a profile: TensorRT reports the axes the profile varies as -1.
        self.shape = (
            tuple(-1 if low != high else d for d, low, high in zip(shape, profile[0], profile[2]))
            if profile
            else shape
        )
        self.profile = profile
        self.dtype = dtype
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
        return self.shape

    def get_tensor_dtype(self, name: str) -> DataType:
        return self.dtype

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> Profile:
        if self.profile is None:
            raise ValueError("no optimisation profile")
        return self.profile

    def create_execution_context(self) -> IdentityContext:
        context = IdentityContext(self)
        self.contexts.append(context)
        return context


class IdentityTensorRT:
    """The module-shaped double: pass it as `tensorrt_module` to TensorRTBackend."""

    TensorIOMode = TensorIOMode
    DataType = DataType
    Logger = Logger
    __version__ = __version__

    def __init__(
        self,
        runtime: CudaRuntime,
        shape: Tuple[int, ...] = (1, 12),
        half: bool = False,
        profile: Optional[Profile] = None,
    ) -> None:
        self._runtime = runtime
        self.engine = IdentityEngine(runtime, shape, DataType.HALF if half else DataType.FLOAT, profile)

    def Runtime(self, logger: Logger) -> IdentityTensorRT:
        return self

    def deserialize_cuda_engine(self, blob: bytes) -> IdentityEngine | None:
        return self.engine if blob == IDENTITY_ENGINE_MAGIC else None
