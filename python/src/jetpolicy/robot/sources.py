"""Observation sources that need no robot: synthetic signals and recorded replays.

Both expose the transport's observation side (`poll()` -> views keyed by input name, or None;
`close()`), so the runner and the bench drive them exactly like a socket.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from jetpolicy.common.errors import ConfigError
from jetpolicy.common.manifest import TensorSpec
from jetpolicy.robot.transport import payload_size, split_views

__all__ = ["ReplaySource", "SyntheticSource"]


class SyntheticSource:
    """Deterministic smooth signals: element i is amp_i * sin(2*pi*f_i*t + phase_i), t = tick / rate.

    Time comes from the tick count, not the wall clock, so two runs produce identical inputs.
    Every buffer is allocated once; `poll()` computes in place with numpy `out=` arguments.
    """

    # Not live input: a runner fed by it is never a robot in use (`jetpolicy busy`).
    live = False

    def __init__(self, specs: Sequence[TensorSpec], rate_hz: float, seed: int = 0) -> None:
        self.specs = list(specs)
        count = payload_size(self.specs)
        rng = np.random.default_rng(seed)
        self._omega = (2.0 * np.pi * rng.uniform(0.1, 2.0, count)).astype(np.float64)
        self._phase = rng.uniform(0.0, 2.0 * np.pi, count)
        self._amp = rng.uniform(0.2, 1.0, count)
        self._work = np.zeros(count, dtype=np.float64)
        self._flat = np.zeros(count, dtype=np.float32)
        self.observation = split_views(self._flat, self.specs)
        self._dt = 1.0 / rate_hz
        self.tick = 0

    def poll(self) -> Optional[Dict[str, np.ndarray]]:
        np.multiply(self._omega, self.tick * self._dt, out=self._work)
        np.add(self._work, self._phase, out=self._work)
        np.sin(self._work, out=self._work)
        np.multiply(self._work, self._amp, out=self._work)
        np.copyto(self._flat, self._work, casting="same_kind")
        self.tick += 1
        return self.observation

    def close(self) -> None:
        pass


class ReplaySource:
    """Replays recorded observations from an .npz: one array per observation input, named like it.

    Each array has shape (T, *input_shape) or (T, input_size). Rows are replayed in order, one per
    tick, wrapping around when `loop` is true; otherwise `poll()` returns None (stale) at the end.
    """

    # Not live input: a runner fed by it is never a robot in use (`jetpolicy busy`).
    live = False

    def __init__(self, path: Path, specs: Sequence[TensorSpec], loop: bool = True) -> None:
        self.specs = list(specs)
        self.loop = loop
        try:
            archive = np.load(str(path))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot read replay file {path}: {exc}", "record it with numpy.savez"
            ) from None
        self._rows: Dict[str, np.ndarray] = {}
        length = -1
        with archive:
            for spec in self.specs:
                if spec.name not in archive.files:
                    raise ConfigError(
                        f"replay file {path} has no array '{spec.name}' (has {sorted(archive.files)})",
                        "save one array per observation input, named like the input",
                    )
                data = np.asarray(archive[spec.name], dtype=np.float32)
                if data.ndim < 1 or data.shape[0] == 0 or data[0].size != spec.size:
                    raise ConfigError(
                        f"replay array '{spec.name}' has shape {data.shape}, expected (T, {spec.size})",
                        "record one row per tick",
                    )
                if length not in (-1, data.shape[0]):
                    raise ConfigError(f"replay arrays in {path} differ in length", "record them together")
                length = data.shape[0]
                self._rows[spec.name] = np.ascontiguousarray(data.reshape(data.shape[0], *spec.shape))
        self.length = length
        self._flat = np.zeros(payload_size(self.specs), dtype=np.float32)
        self.observation = split_views(self._flat, self.specs)
        self.tick = 0

    def poll(self) -> Optional[Dict[str, np.ndarray]]:
        if self.tick >= self.length:
            if not self.loop:
                return None
            self.tick = 0
        for name, rows in self._rows.items():
            np.copyto(self.observation[name], rows[self.tick])
        self.tick += 1
        return self.observation

    def close(self) -> None:
        pass
