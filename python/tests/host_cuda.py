"""A test double of `CudaRuntime` whose "device" memory is host memory: no GPU, no libcudart.

It stands in for the CUDA layer (tested on its own on a real GPU in test_cuda_runtime.py) so that
TensorRTBackend's own logic (shapes, buffers, addresses, enqueue order) runs anywhere, together
with the identity engine double (identity_tensorrt.py), whose enqueue copies through
`call("cudaMemcpyAsync", dst, src, nbytes, kind, stream)`: here a plain memmove. Copies are
synchronous, so `synchronize` has nothing to wait for; a "graph" replays the captured enqueue.
It implements only what TensorRTBackend calls. Never shipped.
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable, List, Optional, Sequence

import numpy as np


class HostArray:
    def __init__(self, shape: Sequence[int], dtype: Any) -> None:
        self.array = np.zeros(tuple(shape), dtype=dtype)
        self.nbytes = self.array.nbytes
        self.pointer: Optional[int] = self.array.ctypes.data
        self.freed = False

    def free(self) -> None:
        self.freed = True
        self.pointer = None


class HostBuffer:
    def __init__(self, nbytes: int) -> None:
        self._memory = ctypes.create_string_buffer(max(nbytes, 1))
        self.nbytes = nbytes
        self.pointer: Optional[int] = ctypes.addressof(self._memory)

    def free(self) -> None:
        self.pointer = None


class HostGraph:
    def __init__(self, enqueue: Callable[[], None]) -> None:
        self._enqueue = enqueue
        self.launches = 0

    def launch(self, stream: HostStream) -> None:
        self.launches += 1
        self._enqueue()

    def destroy(self) -> None:
        pass


class HostStream:
    handle = 0

    def copy_to_device(self, device: HostBuffer, host: HostArray) -> None:
        ctypes.memmove(device.pointer, host.pointer, host.nbytes)

    def copy_to_host(self, host: HostArray, device: HostBuffer) -> None:
        ctypes.memmove(host.pointer, device.pointer, host.nbytes)

    def synchronize(self) -> None:
        pass

    def capture(self, enqueue: Callable[[], None]) -> HostGraph:
        return HostGraph(enqueue)

    def destroy(self) -> None:
        pass


class HostCudaRuntime:
    """Pass it as `cuda` to TensorRTBackend; `pinned` lists the host arrays it handed out."""

    library = "host memory (test double)"

    def __init__(self) -> None:
        self.pinned: List[HostArray] = []

    def use_device(self, index: int = 0) -> None:
        pass

    def pinned_array(self, shape: Sequence[int], dtype: Any) -> HostArray:
        array = HostArray(shape, dtype)
        self.pinned.append(array)
        return array

    def device_buffer(self, nbytes: int) -> HostBuffer:
        return HostBuffer(nbytes)

    def stream(self) -> HostStream:
        return HostStream()

    def call(self, name: str, *args: Any) -> None:
        if name != "cudaMemcpyAsync":
            raise NotImplementedError(name)
        dst, src, nbytes = args[0], args[1], args[2]
        ctypes.memmove(dst.value, src.value, nbytes)
