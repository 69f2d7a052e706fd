"""A loaded policy: manifest + backend, stepping with no per-tick allocation."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from jetpolicy.common.errors import PolicyValidationError
from jetpolicy.common.manifest import PolicyManifest, TensorSpec, load_manifest, sha256_file
from jetpolicy.robot.backends.base import InferenceBackend
from jetpolicy.robot.backends.select import select_backend

__all__ = ["MANIFEST_FILE", "MODEL_FILE", "Policy", "backend_mismatches", "load_policy", "safe_action_arrays"]

MODEL_FILE = "policy.onnx"
MANIFEST_FILE = "policy.json"


def backend_mismatches(manifest: PolicyManifest, backend: InferenceBackend) -> List[str]:
    """Every difference between what the manifest promises and what the backend loaded."""
    problems: List[str] = []
    for kind, declared, loaded in (
        ("input", manifest.inputs, backend.inputs),
        ("output", manifest.outputs, backend.outputs),
    ):
        have = {s.name: s for s in loaded}
        want = {s.name: s for s in declared}
        for name in want:
            if name not in have:
                problems.append(f"{kind} '{name}' is in the manifest but not in the {backend.name} model")
        for name in have:
            if name not in want:
                problems.append(f"{kind} '{name}' is in the {backend.name} model but not in the manifest")
        for name in want.keys() & have.keys():
            if want[name].shape != have[name].shape:
                problems.append(
                    f"{kind} '{name}' shape: model {have[name].shape} vs manifest {want[name].shape}"
                )
            if want[name].dtype != have[name].dtype:
                problems.append(
                    f"{kind} '{name}' dtype: model {have[name].dtype} vs manifest {want[name].dtype}"
                )
    return sorted(problems)


def _vector(values: Optional[List[float]], spec: TensorSpec, default: float) -> np.ndarray:
    if values is None:
        return np.full(spec.shape, default, dtype=spec.dtype)
    return np.asarray(values, dtype=spec.dtype).reshape(spec.shape)


def safe_action_arrays(manifest: PolicyManifest) -> Dict[str, np.ndarray]:
    """The manifest's safe action per action output (zeros if none), clipped to the action limits;
    read-only arrays. The runner publishes it on stale input; `jetpolicy safe-action` once."""
    result: Dict[str, np.ndarray] = {}
    for spec in manifest.action_outputs:
        transform = manifest.action.get(spec.name)
        safe = _vector(manifest.safe_action.get(spec.name), spec, 0.0)
        low = _vector(transform.low if transform else None, spec, -np.inf)
        high = _vector(transform.high if transform else None, spec, np.inf)
        np.clip(safe, low, high, out=safe)
        safe.flags.writeable = False
        result[spec.name] = safe
    return result


class Policy:
    """Steps a policy: normalise observations, carry recurrent state, transform actions.

    Every buffer is allocated here. `step` returns the same action arrays each tick (overwritten
    by the next step), so the hot loop allocates nothing; callers copy what they keep.
    """

    def __init__(self, manifest: PolicyManifest, backend: InferenceBackend, backend_reason: str = "") -> None:
        problems = backend_mismatches(manifest, backend)
        if problems:
            raise PolicyValidationError(
                problems,
                "re-export the model and manifest together (`jetpolicy export`), or rebuild the engine",
            )
        self._manifest = manifest
        self._backend = backend
        self._reason = backend_reason or backend.name
        self._obs_specs = manifest.observation_inputs
        self._act_specs = manifest.action_outputs
        self._feeds: Dict[str, np.ndarray] = {
            s.name: np.zeros(s.shape, dtype=s.dtype) for s in manifest.inputs
        }
        self._norm: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
        for spec in self._obs_specs:
            norm = manifest.normalization.get(spec.name)
            if norm is not None:
                self._norm[spec.name] = (_vector(norm.mean, spec, 0.0), _vector(norm.std, spec, 1.0))
        self._state = [(p.input, p.output) for p in manifest.state]
        self._actions: Dict[str, np.ndarray] = {
            s.name: np.zeros(s.shape, dtype=s.dtype) for s in self._act_specs
        }
        self._transform: Dict[str, Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        for spec in self._act_specs:
            tr = manifest.action.get(spec.name)
            self._transform[spec.name] = (
                _vector(tr.scale if tr else None, spec, 1.0),
                _vector(tr.offset if tr else None, spec, 0.0),
                _vector(tr.low if tr else None, spec, -np.inf),
                _vector(tr.high if tr else None, spec, np.inf),
            )
        # Read-only: the same arrays are handed out on every stale tick.
        self._safe = safe_action_arrays(manifest)
        self._last_raw: Dict[str, np.ndarray] = {}

    @property
    def manifest(self) -> PolicyManifest:
        return self._manifest

    @property
    def observation_specs(self) -> List[TensorSpec]:
        return list(self._obs_specs)

    @property
    def action_specs(self) -> List[TensorSpec]:
        return list(self._act_specs)

    @property
    def backend_name(self) -> str:
        return self._backend.name

    @property
    def backend_reason(self) -> str:
        return self._reason

    def reset_state(self) -> None:
        """Zero the recurrent state, as at start-up (e.g. after a stale-input gap)."""
        for name, _ in self._state:
            self._feeds[name].fill(0)

    def step_raw(self, observations: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run one tick and return the model's raw outputs (backend buffers, before the action transform).

        The recurrent state is advanced exactly as in `step`.
        """
        for spec in self._obs_specs:
            try:
                obs = observations[spec.name]
            except KeyError:
                raise PolicyValidationError(
                    [f"observation '{spec.name}' missing from step()"],
                    "send every observation input each tick",
                ) from None
            buf = self._feeds[spec.name]
            norm = self._norm.get(spec.name)
            if norm is None:
                np.copyto(buf, obs, casting="same_kind")
            else:
                np.subtract(obs, norm[0], out=buf, casting="same_kind")
                np.divide(buf, norm[1], out=buf)
        raw = self._backend.run(self._feeds)
        for state_in, state_out in self._state:
            np.copyto(self._feeds[state_in], raw[state_out])
        self._last_raw = raw
        return raw

    def step(self, observations: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """One control tick: actions keyed by output name (preallocated, overwritten next tick)."""
        raw = self.step_raw(observations)
        for name, out in self._actions.items():
            scale, offset, low, high = self._transform[name]
            np.multiply(raw[name], scale, out=out)
            np.add(out, offset, out=out)
            np.clip(out, low, high, out=out)
        return self._actions

    def safe_action(self) -> Dict[str, np.ndarray]:
        """The manifest's safe action (zeros if none), clipped to the limits; read-only arrays."""
        return self._safe

    def close(self) -> None:
        self._backend.close()


def load_policy(
    release_dir: Union[str, Path],
    backend: str = "auto",
    engine: Optional[Union[str, Path]] = None,
    verify_sha256: bool = True,
    use_cuda_graph: bool = False,
) -> Policy:
    """Load `policy.onnx` + `policy.json` from a release directory with the chosen backend."""
    release = Path(release_dir)
    manifest = load_manifest(release / MANIFEST_FILE)
    model = release / MODEL_FILE
    if verify_sha256 and model.is_file():
        actual = sha256_file(model)
        if actual != manifest.sha256:
            raise PolicyValidationError(
                [f"{model} has sha256 {actual[:16]}..., manifest says {manifest.sha256[:16]}..."],
                "redeploy the release; never edit files inside releases/",
            )
    # A model exported with a dynamic batch axis (for a TensorRT profile) runs at the manifest's shape.
    fixed_shapes = {spec.name: spec.shape for spec in manifest.inputs + manifest.outputs}
    instance, reason = select_backend(
        backend, model, engine, use_cuda_graph=use_cuda_graph, fixed_shapes=fixed_shapes
    )
    try:
        return Policy(manifest, instance, reason)
    except Exception:
        instance.close()
        raise
