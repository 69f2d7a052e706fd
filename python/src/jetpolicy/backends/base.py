"""The one small interface every inference backend implements."""

from __future__ import annotations

from typing import Dict, List, Mapping

import numpy as np

try:
    from typing import Protocol
except ImportError:  # pragma: no cover - Python 3.7 is not supported, kept for clarity
    from typing_extensions import Protocol  # type: ignore[assignment]

from ..manifest import TensorSpec


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
