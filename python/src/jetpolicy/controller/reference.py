"""Reference outputs for the parity gate, made on the controller from the validated ONNX.

Deterministic observations around the training distribution go through ONNX Runtime with any
recurrent state carried from tick to tick; the robot replays them through its deployed backend
(jetpolicy.robot.parity) and compares the raw outputs.
"""

from __future__ import annotations

import argparse
import os
import zipfile
from pathlib import Path
from typing import Any, Dict, Union

import numpy as np

from jetpolicy.common.manifest import PolicyManifest, load_manifest
from jetpolicy.robot.backends.onnxruntime_backend import OnnxRuntimeBackend
from jetpolicy.robot.parity import IN_PREFIX, OUT_PREFIX, REFERENCE_FILE
from jetpolicy.robot.policy import MANIFEST_FILE, MODEL_FILE, Policy

__all__ = ["make_reference", "reference_is_current", "register"]


def _observations(manifest: PolicyManifest, count: int, seed: int) -> Dict[str, np.ndarray]:
    """Observations around the training distribution: mean +- 3 std when normalisation is known."""
    rng = np.random.default_rng(seed)
    result: Dict[str, np.ndarray] = {}
    for spec in manifest.observation_inputs:
        z = np.clip(rng.standard_normal((count, *spec.shape)), -3.0, 3.0)
        norm = manifest.normalization.get(spec.name)
        if norm is not None:
            z = z * np.asarray(norm.std).reshape(spec.shape) + np.asarray(norm.mean).reshape(spec.shape)
        result[spec.name] = z.astype(spec.dtype)
    return result


def make_reference(
    model_path: Union[str, Path],
    manifest: Union[PolicyManifest, str, Path],
    out_path: Union[str, Path],
    count: int = 32,
    seed: int = 0,
) -> Path:
    """Run the ONNX on `count` consecutive ticks (state carried) and save inputs + raw outputs."""
    if not isinstance(manifest, PolicyManifest):
        manifest = load_manifest(Path(manifest))
    fixed_shapes = {spec.name: spec.shape for spec in manifest.inputs + manifest.outputs}
    backend = OnnxRuntimeBackend(model_path, fixed_shapes=fixed_shapes)
    policy = Policy(manifest, backend, "onnxruntime: reference")
    try:
        obs = _observations(manifest, count, seed)
        outputs: Dict[str, np.ndarray] = {
            s.name: np.zeros((count, *s.shape), s.dtype) for s in manifest.outputs
        }
        for i in range(count):
            raw = policy.step_raw({name: values[i] for name, values in obs.items()})
            for name, buf in outputs.items():
                buf[i] = raw[name]
    finally:
        policy.close()
    arrays: Dict[str, Any] = {"manifest_sha256": np.array(manifest.sha256)}
    arrays.update({IN_PREFIX + k: v for k, v in obs.items()})
    arrays.update({OUT_PREFIX + k: v for k, v in outputs.items()})
    out = Path(out_path)
    # Written beside the target and renamed: a reader (or a cached copy) never sees a torn file.
    # np.savez appends .npz to names without it, so it writes into an open handle.
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_writers_temps(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _remove_dead_writers_temps(out: Path) -> None:
    """Temp files a killed run left beside `out` (`.<name>.<pid>.tmp`, its process gone); one whose
    writer still runs (a deploy beside this one) is left to it."""
    prefix, suffix = f".{out.name}.", ".tmp"
    for entry in out.parent.iterdir():
        if not (entry.name.startswith(prefix) and entry.name.endswith(suffix)):
            continue
        pid = entry.name[len(prefix) : -len(suffix)]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            entry.unlink(missing_ok=True)


def reference_is_current(
    path: Union[str, Path], manifest: Union[PolicyManifest, str, Path], count: int
) -> bool:
    """Whether `path` is a complete reference for this manifest with `count` cases: every array
    reads back (the zip's CRCs hold, so a truncated or damaged file fails) and matches."""
    if not isinstance(manifest, PolicyManifest):
        manifest = load_manifest(Path(manifest))
    expected = [IN_PREFIX + s.name for s in manifest.observation_inputs]
    expected += [OUT_PREFIX + s.name for s in manifest.outputs]
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            if set(data.files) != {"manifest_sha256", *expected}:
                return False
            if str(data["manifest_sha256"]) != manifest.sha256:
                return False
            return all(data[name].shape[:1] == (count,) for name in expected)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return False


def register(subparsers: Any) -> None:
    ref = subparsers.add_parser(
        "reference", help="write reference.npz (inputs + ONNX outputs) for the parity gate"
    )
    ref.add_argument("--model", type=Path, required=True, help=MODEL_FILE)
    ref.add_argument("--manifest", type=Path, required=True, help=MANIFEST_FILE)
    ref.add_argument("--out", type=Path, required=True, help=REFERENCE_FILE)
    ref.add_argument("--count", type=int, default=32, help="consecutive ticks (state carried)")
    ref.add_argument("--seed", type=int, default=0)
    ref.add_argument(
        "--reuse",
        action="store_true",
        help="keep --out when it reads back complete for this manifest and count (prints 'kept ...')",
    )
    ref.set_defaults(handler=run_reference)


def run_reference(args: argparse.Namespace) -> int:
    # A cache is reused only once it verifies: a torn or stale one is written again, never trusted.
    if args.reuse and reference_is_current(args.out, args.manifest, args.count):
        print(f"kept {args.out} ({args.count} cases, verified)")
        return 0
    path = make_reference(args.model, args.manifest, args.out, count=args.count, seed=args.seed)
    print(f"wrote {path} ({args.count} cases)")
    return 0
