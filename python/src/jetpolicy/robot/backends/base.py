"""The one small interface every inference backend implements."""

from __future__ import annotations

from typing import Dict, List, Mapping, Protocol

import numpy as np

from jetpolicy.common.manifest import TensorSpec

__all__ = ["BACKEND_KINDS", "TENSORRT_FIX", "InferenceBackend"]

# The one list of backend names: the CLI's choices, the runner config and the roles' specs read it.
BACKEND_KINDS = ("auto", "onnxruntime", "tensorrt")
TENSORRT_FIX = (
    "install JetPack's python3-libnvinfer (the jetson_provision role pins it) and create the venv "
    "with --system-site-packages so it sees it"
)


class InferenceBackend(Protocol):
    """Runs one policy step into preallocated buffers.

    `inputs` and `outputs` describe the model as the backend loaded it (names and shapes read from
    the model, never assumed). `run` copies each given array into the backend's input buffer,
    executes, and returns the backend's own output buffers: they are overwritten on the next call,
    so callers copy what they keep. No allocation happens per call.
    """

    name: str

    @property
    def inputs(self) -> List[TensorSpec]: ...

    @property
    def outputs(self) -> List[TensorSpec]: ...

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]: ...

    def close(self) -> None: ...
