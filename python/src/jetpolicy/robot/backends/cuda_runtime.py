"""The CUDA runtime through ctypes: the buffers, stream and graph the TensorRT backend needs.

Why libcudart and not pycuda: pycuda has no stream-capture or graph API (no
``Stream.begin_capture``; its sources call no cuGraph/cudaGraph function), JetPack ships no
pycuda, and PyPI has only its source, which must be compiled against the CUDA toolkit once per
(L4T release, Python) on a robot of that kind. ``libcudart`` is on every JetPack already
(``cuda-cudart-11-4`` on JetPack 5, ``cuda-cudart-12-x`` on JetPack 6: TensorRT links it), so
loading it needs nothing installed, nothing compiled and nothing downloaded on the robot.

The calls used here and how they differ between the CUDA versions a robot can have
(11.4 on JetPack 5, 12.2-12.6 on JetPack 6, 13 on Thor-class JetPack 7 and on the lent GPU):

- The soname carries the major version: ``libcudart.so.11.0`` for every 11.x,
  ``libcudart.so.12``, ``libcudart.so.13``.
- ``cudaGraphInstantiate`` changed its signature in CUDA 12 (five arguments with an error-node
  and log buffer in 11.x, three with flags from 12.0): calling the wrong one through ctypes
  corrupts the stack. ``cudaGraphInstantiateWithFlags`` has had the same three arguments since
  11.4 and is what this module calls.
- ``cudaStreamGetCaptureInfo`` changed in 12.0 and again in 13.0; only
  ``cudaStreamIsCapturing`` (unchanged since 10.0) is used to read the capture state.
- Error codes are read by name (``cudaGetErrorName``), never by number, so a code renumbered or
  added in a later release still gets its own name in the message.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from jetpolicy.common.errors import BackendError

__all__ = [
    "CUDART_SEARCH_DIRS",
    "CUDART_SONAMES",
    "MIN_CUDA_VERSION",
    "CudaError",
    "CudaGraph",
    "CudaRuntime",
    "CudaStream",
    "DeviceBuffer",
    "PinnedArray",
    "cuda_error_fix",
    "cudart_candidates",
    "decode_cuda_version",
    "load_cuda_runtime",
]

# Newest first: a robot has one of them; a controller-built venv never brings its own.
CUDART_SONAMES = ("libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so")
# JetPack installs the runtime under /usr/local/cuda (a link to cuda-XX.Y) and registers it with
# ldconfig; the explicit directories cover a service whose environment has no LD_LIBRARY_PATH.
CUDART_SEARCH_DIRS = (
    "/usr/local/cuda/lib64",
    "/usr/local/cuda/targets/aarch64-linux/lib",
    "/usr/local/cuda/lib",
)
MIN_CUDA_VERSION = (11, 4)

_HOST_TO_DEVICE = 1
_DEVICE_TO_HOST = 2
_DEVICE_TO_DEVICE = 3
_STREAM_NON_BLOCKING = 1
# Thread-local capture: only this thread's unsafe calls break the capture, so nothing else in
# the process (a metrics thread, say) can invalidate it.
_CAPTURE_MODE_THREAD_LOCAL = 1

_FIXES: Dict[str, str] = {
    "cudaErrorInsufficientDriver": (
        "the CUDA runtime found is newer than the GPU driver: on a Jetson use JetPack's own "
        "cuda-cudart package (it matches the L4T driver); elsewhere update the NVIDIA driver"
    ),
    "cudaErrorNoDevice": (
        "no GPU is visible to this process: on a Jetson the service needs the GPU device nodes "
        "(/dev/nvhost-*, /dev/nvmap in its DeviceAllow list) and the video/render groups"
    ),
    "cudaErrorMemoryAllocation": (
        "the GPU is out of memory (on a Jetson it shares RAM with the CPU): stop other GPU "
        "processes or deploy a smaller engine"
    ),
    "cudaErrorStreamCaptureUnsupported": (
        "this call cannot be captured into a CUDA graph: set the runner's cuda_graph to false"
    ),
    "cudaErrorStreamCaptureInvalidated": (
        "the CUDA graph capture was broken by an uncapturable call: set cuda_graph to false"
    ),
}
_DEFAULT_FIX = "check the kernel log (dmesg) and the GPU state (tegrastats or nvidia-smi)"


def decode_cuda_version(number: int) -> Tuple[int, int]:
    """``cudaRuntimeGetVersion``'s 1000*major + 10*minor: 11040 -> (11, 4), 12060 -> (12, 6)."""
    return number // 1000, (number % 1000) // 10


def cuda_error_fix(error_name: str) -> str:
    """What an operator should do about a CUDA error, by its name."""
    return _FIXES.get(error_name, _DEFAULT_FIX)


class CudaError(BackendError):
    """A CUDA runtime call that returned an error, with the call, the error's name and text."""

    def __init__(self, call: str, code: int, name: str, text: str) -> None:
        super().__init__(f"CUDA {call} failed: {name} ({code}): {text}", cuda_error_fix(name))
        self.call = call
        self.code = code
        self.error_name = name


def cudart_candidates() -> List[str]:
    """Where libcudart is looked for, in order: sonames through ldconfig, then JetPack's paths."""
    found = ctypes.util.find_library("cudart")
    paths = [os.path.join(d, n) for d in CUDART_SEARCH_DIRS for n in CUDART_SONAMES]
    return list(CUDART_SONAMES) + ([found] if found else []) + [p for p in paths if os.path.exists(p)]


def load_cuda_runtime(candidates: Optional[Sequence[str]] = None) -> CudaRuntime:
    """The first libcudart of ``candidates`` (default: cudart_candidates()) that loads."""
    tried: List[str] = []
    for name in candidates if candidates is not None else cudart_candidates():
        try:
            handle = ctypes.CDLL(name)
        except OSError as exc:
            tried.append(f"{name} ({exc})")
            continue
        return CudaRuntime(handle, name)
    raise BackendError(
        "the CUDA runtime (libcudart) is not loadable; tried: " + "; ".join(tried),
        "install JetPack's cuda-cudart package (cuda-cudart-11-4 on JetPack 5, cuda-cudart-12-x "
        "on JetPack 6) or add its directory to ldconfig",
    )


_SIGNATURES: Dict[str, Sequence[Any]] = {
    "cudaGetErrorName": [ctypes.c_int],
    "cudaGetErrorString": [ctypes.c_int],
    "cudaRuntimeGetVersion": [ctypes.POINTER(ctypes.c_int)],
    "cudaDriverGetVersion": [ctypes.POINTER(ctypes.c_int)],
    "cudaGetDeviceCount": [ctypes.POINTER(ctypes.c_int)],
    "cudaSetDevice": [ctypes.c_int],
    "cudaHostAlloc": [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_uint],
    "cudaFreeHost": [ctypes.c_void_p],
    "cudaMalloc": [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t],
    "cudaFree": [ctypes.c_void_p],
    "cudaMemcpyAsync": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p],
    "cudaStreamCreateWithFlags": [ctypes.POINTER(ctypes.c_void_p), ctypes.c_uint],
    "cudaStreamDestroy": [ctypes.c_void_p],
    "cudaStreamSynchronize": [ctypes.c_void_p],
    "cudaStreamBeginCapture": [ctypes.c_void_p, ctypes.c_int],
    "cudaStreamEndCapture": [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)],
    "cudaStreamIsCapturing": [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)],
    "cudaGraphInstantiateWithFlags": [
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_void_p,
        ctypes.c_ulonglong,
    ],
    "cudaGraphLaunch": [ctypes.c_void_p, ctypes.c_void_p],
    "cudaGraphExecDestroy": [ctypes.c_void_p],
    "cudaGraphDestroy": [ctypes.c_void_p],
}


class CudaRuntime:
    """One loaded libcudart: every call checked, every failure a CudaError with its name."""

    def __init__(self, handle: Any, library: str) -> None:
        self.library = library
        self._lib = handle
        missing = [name for name in _SIGNATURES if not hasattr(handle, name)]
        if missing:
            raise BackendError(
                f"{library} lacks {', '.join(missing)} (older than CUDA 11.4?)",
                "use JetPack 5 or newer (CUDA 11.4+)",
            )
        for name, argtypes in _SIGNATURES.items():
            function = getattr(handle, name)
            function.argtypes = list(argtypes)
            function.restype = ctypes.c_char_p if name.startswith("cudaGetError") else ctypes.c_int
        self.version = decode_cuda_version(self._read_int("cudaRuntimeGetVersion"))
        if self.version < MIN_CUDA_VERSION:
            raise BackendError(
                f"{library} is CUDA {self.version[0]}.{self.version[1]}; the runner needs 11.4+",
                "use JetPack 5 or newer",
            )

    def _read_int(self, call: str, *args: Any) -> int:
        value = ctypes.c_int()
        self.check(call, getattr(self._lib, call)(*args, ctypes.byref(value)))
        return value.value

    def check(self, call: str, code: int) -> None:
        """Raise a CudaError for a non-zero return code of ``call``."""
        if code == 0:
            return
        name = (self._lib.cudaGetErrorName(code) or b"cudaError?").decode()
        text = (self._lib.cudaGetErrorString(code) or b"").decode()
        raise CudaError(call, code, name, text)

    def call(self, name: str, *args: Any) -> None:
        """Call ``name`` and check its return code."""
        self.check(name, getattr(self._lib, name)(*args))

    @property
    def driver_version(self) -> Tuple[int, int]:
        """The driver's CUDA version; (0, 0) when no driver is installed."""
        return decode_cuda_version(self._read_int("cudaDriverGetVersion"))

    def device_count(self) -> int:
        return self._read_int("cudaGetDeviceCount")

    def use_device(self, index: int = 0) -> None:
        """Make ``index`` current for this thread (creates the primary context on first use)."""
        self.call("cudaSetDevice", index)

    def pinned_array(self, shape: Sequence[int], dtype: Any) -> PinnedArray:
        return PinnedArray(self, tuple(int(d) for d in shape), np.dtype(dtype))

    def device_buffer(self, nbytes: int) -> DeviceBuffer:
        return DeviceBuffer(self, nbytes)

    def stream(self) -> CudaStream:
        return CudaStream(self)


class PinnedArray:
    """A numpy array over page-locked host memory, so async copies DMA straight from it."""

    def __init__(self, runtime: CudaRuntime, shape: Tuple[int, ...], dtype: np.dtype) -> None:
        self._runtime = runtime
        self.nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        pointer = ctypes.c_void_p()
        runtime.call("cudaHostAlloc", ctypes.byref(pointer), max(self.nbytes, 1), 0)
        self.pointer: Optional[int] = pointer.value
        raw = (ctypes.c_uint8 * max(self.nbytes, 1)).from_address(int(pointer.value or 0))
        flat = np.ctypeslib.as_array(raw)[: self.nbytes]
        self.array: np.ndarray = flat.view(dtype).reshape(shape)

    def free(self) -> None:
        if self.pointer is not None:
            self._runtime.call("cudaFreeHost", self.pointer)
            self.pointer = None


class DeviceBuffer:
    """Device memory of a fixed size, allocated once."""

    def __init__(self, runtime: CudaRuntime, nbytes: int) -> None:
        self._runtime = runtime
        self.nbytes = nbytes
        pointer = ctypes.c_void_p()
        runtime.call("cudaMalloc", ctypes.byref(pointer), max(nbytes, 1))
        self.pointer: Optional[int] = pointer.value

    def free(self) -> None:
        if self.pointer is not None:
            self._runtime.call("cudaFree", self.pointer)
            self.pointer = None


class CudaStream:
    """A non-blocking stream: async copies, synchronisation and graph capture on it."""

    def __init__(self, runtime: CudaRuntime) -> None:
        self._runtime = runtime
        handle = ctypes.c_void_p()
        runtime.call("cudaStreamCreateWithFlags", ctypes.byref(handle), _STREAM_NON_BLOCKING)
        self.handle: int = int(handle.value or 0)

    def copy_to_device(self, device: DeviceBuffer, host: PinnedArray) -> None:
        self._runtime.call(
            "cudaMemcpyAsync", device.pointer, host.pointer, host.nbytes, _HOST_TO_DEVICE, self.handle
        )

    def copy_to_host(self, host: PinnedArray, device: DeviceBuffer) -> None:
        self._runtime.call(
            "cudaMemcpyAsync", host.pointer, device.pointer, host.nbytes, _DEVICE_TO_HOST, self.handle
        )

    def copy_on_device(self, dst: DeviceBuffer, src: DeviceBuffer, nbytes: int) -> None:
        self._runtime.call(
            "cudaMemcpyAsync", dst.pointer, src.pointer, nbytes, _DEVICE_TO_DEVICE, self.handle
        )

    def synchronize(self) -> None:
        self._runtime.call("cudaStreamSynchronize", self.handle)

    def is_capturing(self) -> bool:
        status = ctypes.c_int()
        self._runtime.call("cudaStreamIsCapturing", self.handle, ctypes.byref(status))
        return status.value != 0

    def capture(self, enqueue: Callable[[], None]) -> CudaGraph:
        """Record what ``enqueue`` puts on this stream into a graph, without running it.

        A failure inside ``enqueue`` still ends the capture, so the stream stays usable.
        """
        self._runtime.call("cudaStreamBeginCapture", self.handle, _CAPTURE_MODE_THREAD_LOCAL)
        graph = ctypes.c_void_p()
        try:
            enqueue()
        finally:
            end = self._runtime._lib.cudaStreamEndCapture(self.handle, ctypes.byref(graph))
        self._runtime.check("cudaStreamEndCapture", end)
        return CudaGraph(self._runtime, int(graph.value or 0))

    def destroy(self) -> None:
        if self.handle:
            self._runtime.call("cudaStreamDestroy", self.handle)
            self.handle = 0


class CudaGraph:
    """A captured, instantiated graph, replayed with one launch per tick."""

    def __init__(self, runtime: CudaRuntime, graph: int) -> None:
        self._runtime = runtime
        self._graph = graph
        executable = ctypes.c_void_p()
        try:
            runtime.call("cudaGraphInstantiateWithFlags", ctypes.byref(executable), graph, 0)
        except CudaError:
            runtime.call("cudaGraphDestroy", graph)
            raise
        self._exec: int = int(executable.value or 0)

    def launch(self, stream: CudaStream) -> None:
        self._runtime.call("cudaGraphLaunch", self._exec, stream.handle)

    def destroy(self) -> None:
        if self._exec:
            self._runtime.call("cudaGraphExecDestroy", self._exec)
            self._runtime.call("cudaGraphDestroy", self._graph)
            self._exec = 0
