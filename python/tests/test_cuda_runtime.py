"""The CUDA layer of the TensorRT backend (libcudart through ctypes) and `auto`'s TensorRT choice.

Tests marked `gpu` need an NVIDIA GPU: `scripts/cuda-layer-check.sh` runs them on the lent GPU
machine (docs/cuda-layer.md has the recorded run). The others run anywhere: they check the
version and error handling, the loader's failure message, and the part-by-part TensorRT choice.
"""

from __future__ import annotations

import json
import os
import sys
import time
import types
from pathlib import Path
from typing import Iterator, List, Optional

import numpy as np
import pytest
from identity_tensorrt import IDENTITY_ENGINE_MAGIC, IdentityTensorRT

from jetpolicy.common.errors import BackendError
from jetpolicy.robot.backends import select_backend
from jetpolicy.robot.backends.cuda_runtime import (
    CudaError,
    CudaRuntime,
    cuda_error_fix,
    decode_cuda_version,
    load_cuda_runtime,
)
from jetpolicy.robot.backends.select import (
    cuda_unavailable_reason,
    engine_mismatch,
    read_device_model,
    tensorrt_unavailable_reason,
)
from jetpolicy.robot.backends.tensorrt_backend import TensorRTBackend

# scripts/cuda-layer-check.sh sets this to run the GPU tests once per CUDA major (11, 12, 13).
TEST_CUDART = os.environ.get("JETPOLICY_TEST_CUDART")
CANDIDATES = [TEST_CUDART] if TEST_CUDART else None


def _loadable_runtime() -> Optional[CudaRuntime]:
    try:
        return load_cuda_runtime(CANDIDATES)
    except BackendError:
        return None


def _gpu_missing() -> Optional[str]:
    if CANDIDATES is None:
        return cuda_unavailable_reason()
    try:
        return None if load_cuda_runtime(CANDIDATES).device_count() > 0 else "no GPU"
    except BackendError as exc:
        return str(exc)


CUDA_REASON = _gpu_missing()
gpu = pytest.mark.skipif(CUDA_REASON is not None, reason=f"no usable GPU: {CUDA_REASON}")


@pytest.mark.parametrize(
    ("number", "version"),
    [(11040, (11, 4)), (12020, (12, 2)), (12060, (12, 6)), (13000, (13, 0)), (13010, (13, 1))],
)
def test_runtime_version_decoding(number: int, version: tuple[int, int]) -> None:
    """cudaRuntimeGetVersion's integer decodes to (major, minor) for JetPack 5, 6 and CUDA 13."""
    assert decode_cuda_version(number) == version


def test_error_fixes_by_name() -> None:
    """Known errors get their own fix; an unknown one the generic one."""
    assert "JetPack's own" in cuda_error_fix("cudaErrorInsufficientDriver")
    assert "DeviceAllow" in cuda_error_fix("cudaErrorNoDevice")
    assert "cuda_graph to false" in cuda_error_fix("cudaErrorStreamCaptureUnsupported")
    assert "dmesg" in cuda_error_fix("cudaErrorSomethingNew")


def test_no_libcudart_names_every_candidate_and_the_package() -> None:
    """When no libcudart loads, the error lists what was tried and names JetPack's package."""
    with pytest.raises(BackendError) as info:
        load_cuda_runtime(["libcudart-missing.so.99", "/nonexistent/libcudart.so.12"])
    assert "libcudart-missing.so.99" in str(info.value)
    assert "/nonexistent/libcudart.so.12" in str(info.value)
    assert "cuda-cudart-11-4" in info.value.fix


def test_library_without_graph_api_is_refused() -> None:
    """A libcudart older than 11.4 (no cudaGraphInstantiateWithFlags) is refused by name."""
    handle = types.SimpleNamespace(cudaGetErrorName=None, cudaRuntimeGetVersion=None)
    with pytest.raises(BackendError, match="cudaGraphInstantiateWithFlags") as info:
        CudaRuntime(handle, "libcudart.so.10.2")
    assert "11.4" in info.value.fix


@pytest.mark.skipif(
    _loadable_runtime() is None or CUDA_REASON is None, reason="needs libcudart without a usable GPU"
)
def test_runtime_without_driver_gives_named_error() -> None:
    """libcudart present but no GPU driver (this CI machine has CUDA 13's runtime, no GPU): the
    first device call fails with the error's name, its text and what to do."""
    runtime = _loadable_runtime()
    assert runtime is not None
    with pytest.raises(CudaError) as info:
        runtime.use_device(0)
        runtime.device_buffer(64)
    assert info.value.error_name in {"cudaErrorInsufficientDriver", "cudaErrorNoDevice"}
    assert info.value.call in {"cudaSetDevice", "cudaMalloc"}
    assert info.value.fix == cuda_error_fix(info.value.error_name)


# ---- auto's TensorRT choice, part by part -----------------------------------------------------


@pytest.mark.parametrize(
    ("record", "device", "expected"),
    [
        (None, "NVIDIA Jetson AGX Orin", "no build record"),
        ({"tensorrt_version": "8.5.2"}, None, "built with TensorRT 8.5.2, this robot has 10.3.0.30"),
        ({}, None, "built with TensorRT unknown"),
        (
            {"tensorrt_version": "10.3.0", "device_model": "NVIDIA Jetson Xavier NX"},
            "NVIDIA Jetson AGX Orin",
            "built on NVIDIA Jetson Xavier NX, this robot is NVIDIA Jetson AGX Orin",
        ),
        (
            {"tensorrt_version": "10.3.0", "device_model": "NVIDIA Jetson AGX Orin"},
            "NVIDIA Jetson AGX Orin",
            None,
        ),
        ({"tensorrt_version": "10.3.0.30", "device_model": None}, None, None),
    ],
)
def test_engine_build_record_decides(
    record: Optional[dict[str, object]], device: Optional[str], expected: Optional[str]
) -> None:
    """An engine runs only on the TensorRT release (major.minor.patch) and device it was built on."""
    reason = engine_mismatch(record, "10.3.0.30", device)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


@pytest.fixture
def fake_tensorrt(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An importable `tensorrt` (version 10.3.0.30) so the later parts of the choice are reached."""
    module = types.ModuleType("tensorrt")
    module.__version__ = "10.3.0.30"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    yield


def _cached_engine(tmp_path: Path, record: Optional[dict[str, object]]) -> Path:
    """The layout the trtexec module and tensorrt_engine role make: key.engine + key.json, and a
    per-release link to the engine."""
    (tmp_path / "by-release").mkdir()
    (tmp_path / "abc.engine").write_bytes(b"engine")
    if record is not None:
        (tmp_path / "abc.json").write_text(json.dumps(record))
    link = tmp_path / "by-release" / "r1.engine"
    link.symlink_to("../abc.engine")
    return link


def test_choice_names_missing_cuda(tmp_path: Path, fake_tensorrt: None) -> None:
    """tensorrt importable and an engine present, but no usable CUDA: the reason says CUDA."""
    engine = _cached_engine(tmp_path, {"tensorrt_version": "10.3.0"})
    reason = tensorrt_unavailable_reason(engine, cuda_reason=lambda: "libcudart.so.12 sees no GPU")
    assert reason == "CUDA runtime not usable (libcudart.so.12 sees no GPU)"


def test_choice_reads_the_record_behind_the_release_link(tmp_path: Path, fake_tensorrt: None) -> None:
    """The build record is found beside the cached engine the release link points at."""
    engine = _cached_engine(
        tmp_path, {"tensorrt_version": "8.6.2", "device_model": "NVIDIA Jetson AGX Orin"}
    )
    reason = tensorrt_unavailable_reason(
        engine, cuda_reason=lambda: None, device_model=lambda: "NVIDIA Jetson AGX Orin"
    )
    assert reason == "the engine was built with TensorRT 8.6.2, this robot has 10.3.0.30"
    other = tmp_path / "ok"
    other.mkdir()
    ok = _cached_engine(other, {"tensorrt_version": "10.3.0"})
    assert tensorrt_unavailable_reason(ok, cuda_reason=lambda: None, device_model=lambda: None) is None


def test_auto_falls_back_when_cuda_is_not_usable(
    example_release: Path, tmp_path: Path, fake_tensorrt: None
) -> None:
    """On a machine without a GPU, auto with an engine and tensorrt importable still runs ONNX
    Runtime, and its reason names the CUDA part (not a crash in the TensorRT backend)."""
    if CUDA_REASON is None:
        pytest.skip("a GPU is usable here")
    engine = _cached_engine(tmp_path, {"tensorrt_version": "10.3.0"})
    backend, reason = select_backend("auto", example_release / "policy.onnx", engine)
    assert backend.name == "onnxruntime"
    assert reason.startswith("onnxruntime: CUDA runtime not usable (")
    backend.close()


def test_device_model_strips_the_device_tree_nul(tmp_path: Path) -> None:
    """/proc/device-tree/model ends in NUL; the model compared with the build record has none."""
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    assert read_device_model(model) == "NVIDIA Jetson AGX Orin Developer Kit"
    assert read_device_model(tmp_path / "absent") is None


# ---- on a real GPU ------------------------------------------------------------------------------


@pytest.fixture
def runtime() -> CudaRuntime:
    loaded = load_cuda_runtime(CANDIDATES)
    loaded.use_device(0)
    print(f"CUDA runtime {loaded.library}: {loaded.version}, driver {loaded.driver_version}")
    return loaded


@gpu
@pytest.mark.gpu
def test_pinned_and_device_round_trip(runtime: CudaRuntime) -> None:
    """Host -> device -> device -> host through pinned buffers on one stream returns the data."""
    stream = runtime.stream()
    for dtype in ("float32", "float16", "int64"):
        src = runtime.pinned_array((4, 33), dtype)
        dst = runtime.pinned_array((4, 33), dtype)
        a, b = runtime.device_buffer(src.nbytes), runtime.device_buffer(src.nbytes)
        src.array[...] = np.arange(src.array.size).reshape(src.array.shape)
        dst.array[...] = 0
        stream.copy_to_device(a, src)
        stream.copy_on_device(b, a, src.nbytes)
        stream.copy_to_host(dst, b)
        stream.synchronize()
        np.testing.assert_array_equal(dst.array, src.array)
        for buffer in (a, b):
            buffer.free()
        src.free()
        dst.free()
    stream.destroy()


@gpu
@pytest.mark.gpu
def test_graph_capture_records_without_running_and_replays(runtime: CudaRuntime) -> None:
    """Capture puts nothing on the GPU; each launch then reruns the copies on the current host data."""
    stream = runtime.stream()
    src, dst = runtime.pinned_array((1, 12), "float32"), runtime.pinned_array((1, 12), "float32")
    dev = runtime.device_buffer(src.nbytes)

    def enqueue() -> None:
        assert stream.is_capturing()
        stream.copy_to_device(dev, src)
        stream.copy_to_host(dst, dev)

    src.array[...] = 1.0
    dst.array[...] = -1.0
    graph = stream.capture(enqueue)
    stream.synchronize()
    assert not stream.is_capturing()
    np.testing.assert_array_equal(dst.array, -1.0)
    for step in range(200):
        src.array[...] = np.float32(step)
        graph.launch(stream)
        stream.synchronize()
        np.testing.assert_array_equal(dst.array, np.float32(step))
    graph.destroy()
    dev.free()
    stream.destroy()


@gpu
@pytest.mark.gpu
def test_failed_capture_leaves_the_stream_usable(runtime: CudaRuntime) -> None:
    """An uncapturable call inside a capture is a named CudaError, and the stream works after it."""
    stream = runtime.stream()
    with pytest.raises(CudaError) as info:
        stream.capture(stream.synchronize)
    assert info.value.call == "cudaStreamSynchronize"
    assert "Capture" in info.value.error_name
    assert not stream.is_capturing()
    src, dst = runtime.pinned_array((8,), "float32"), runtime.pinned_array((8,), "float32")
    dev = runtime.device_buffer(src.nbytes)
    src.array[...] = 3.0
    stream.copy_to_device(dev, src)
    stream.copy_to_host(dst, dev)
    stream.synchronize()
    np.testing.assert_array_equal(dst.array, 3.0)
    stream.destroy()


@gpu
@pytest.mark.gpu
def test_out_of_memory_is_named(runtime: CudaRuntime) -> None:
    """An allocation larger than any GPU fails as cudaErrorMemoryAllocation with its fix."""
    with pytest.raises(CudaError) as info:
        runtime.device_buffer(1 << 50)
    assert info.value.error_name == "cudaErrorMemoryAllocation"
    assert "out of memory" in info.value.fix


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("use_graph", [False, True])
def test_tensorrt_backend_runs_on_the_gpu(runtime: CudaRuntime, tmp_path: Path, use_graph: bool) -> None:
    """The whole TensorRTBackend (buffers, addresses, enqueue, optional graph) on a real GPU,
    with an identity engine double: every tick's output is that tick's input."""
    engine_file = tmp_path / "identity.engine"
    engine_file.write_bytes(IDENTITY_ENGINE_MAGIC)
    trt = IdentityTensorRT(runtime)
    backend = TensorRTBackend(engine_file, use_cuda_graph=use_graph, cuda=runtime, tensorrt_module=trt)
    assert backend.uses_cuda_graph is use_graph
    assert [s.name for s in backend.inputs] == ["obs"] and backend.outputs[0].shape == [1, 12]
    rng = np.random.default_rng(0)
    latencies: List[float] = []
    for _ in range(500):
        obs = rng.standard_normal((1, 12)).astype(np.float32)
        start = time.perf_counter()
        out = backend.run({"obs": obs})["actions"]
        latencies.append(time.perf_counter() - start)
        np.testing.assert_array_equal(out, obs)
    # With a graph, the context is enqueued once for warm-up and once in the capture, never per tick.
    enqueues = trt.engine.contexts[0].enqueues
    assert enqueues == (2 if use_graph else 501)
    print(
        f"tensorrt backend (identity engine), cuda_graph={use_graph}: "
        f"p50 {np.percentile(latencies, 50) * 1e6:.1f} us, "
        f"p99 {np.percentile(latencies, 99) * 1e6:.1f} us per run"
    )
    backend.close()
    backend.close()


@gpu
@pytest.mark.gpu
def test_tensorrt_backend_refuses_an_engine_it_cannot_deserialize(
    runtime: CudaRuntime, tmp_path: Path
) -> None:
    """A blob TensorRT cannot deserialize is refused with the rebuild fix, and nothing leaks."""
    engine_file = tmp_path / "other.engine"
    engine_file.write_bytes(b"built elsewhere")
    with pytest.raises(BackendError, match="cannot deserialize") as info:
        TensorRTBackend(engine_file, cuda=runtime, tensorrt_module=IdentityTensorRT(runtime))
    assert "rebuild the engine on this robot" in info.value.fix
