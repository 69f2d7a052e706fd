"""Numerical parity between the controller's ONNX Runtime run and the robot's deployed backend.

The controller records deterministic observations and the raw model outputs (`reference.npz`);
the robot replays the same observations through its backend and compares raw outputs, before the
action transform, so clipping cannot hide a difference.
"""

from __future__ import annotations

import argparse
import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from jetpolicy.common.errors import JetpolicyError
from jetpolicy.common.manifest import PolicyManifest
from jetpolicy.robot.backends.base import BACKEND_KINDS
from jetpolicy.robot.policy import load_policy

__all__ = [
    "IN_PREFIX",
    "OUT_PREFIX",
    "PRECISION_TOLERANCES",
    "REFERENCE_FILE",
    "ParityResult",
    "check_parity",
    "register",
]

REFERENCE_FILE = "reference.npz"
# Array-name prefixes inside reference.npz (written by jetpolicy.controller.reference).
IN_PREFIX, OUT_PREFIX = "in__", "out__"

# (atol, rtol) per engine precision. fp32: ORT and TensorRT pick different kernels and summation
# orders, which moves results by a few ulps per layer, well under 1e-4. fp16 keeps ~3 decimal
# digits per op and errors accumulate through the layers, hence 1e-2. int8 quantises activations
# to 1/127 of their calibrated range, so differences of several 1e-2 are normal: 1e-1.
PRECISION_TOLERANCES: Dict[str, Tuple[float, float]] = {
    "fp32": (1e-4, 1e-3),
    "fp16": (1e-2, 1e-2),
    "int8": (1e-1, 1e-1),
}


class ParityError(JetpolicyError):
    """The reference file is missing or does not fit the policy."""


@dataclass(frozen=True)
class ParityResult:
    passed: bool
    max_abs_error: float
    max_rel_error: float
    finite: bool
    atol: float
    rtol: float
    backend: str
    cases: int

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _load_reference(
    path: Path, manifest: PolicyManifest
) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    if not path.is_file():
        raise ParityError(
            f"reference {path} does not exist", "create it with `jetpolicy reference` on the controller"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ParityError(
            f"reference {path} is damaged ({type(exc).__name__}: {exc})",
            "deploy again: the stage step replaces it with the controller's verified copy",
        ) from None
    sha = str(arrays.pop("manifest_sha256", ""))
    if sha and sha != manifest.sha256:
        raise ParityError(
            f"reference {path} was made for model {sha[:16]}, release has {manifest.sha256[:16]}",
            "regenerate reference.npz for this release",
        )
    inputs = {k[len(IN_PREFIX) :]: v for k, v in arrays.items() if k.startswith(IN_PREFIX)}
    outputs = {k[len(OUT_PREFIX) :]: v for k, v in arrays.items() if k.startswith(OUT_PREFIX)}
    want_in = {s.name for s in manifest.observation_inputs}
    if set(inputs) != want_in or not outputs or not set(outputs) <= {s.name for s in manifest.outputs}:
        raise ParityError(
            f"reference {path} has inputs {sorted(inputs)} / outputs {sorted(outputs)}, "
            "which do not fit the manifest",
            "regenerate reference.npz for this release",
        )
    return inputs, outputs


def check_parity(
    release_dir: Union[str, Path],
    backend: str = "auto",
    engine: Optional[Union[str, Path]] = None,
    precision: str = "fp32",
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
    reference: Optional[Union[str, Path]] = None,
) -> ParityResult:
    """Replay reference.npz through the deployed backend; pass iff all close and all finite."""
    if precision not in PRECISION_TOLERANCES:
        raise ParityError(f"unknown precision {precision!r}", f"use one of {', '.join(PRECISION_TOLERANCES)}")
    default_atol, default_rtol = PRECISION_TOLERANCES[precision]
    atol = default_atol if atol is None else atol
    rtol = default_rtol if rtol is None else rtol
    release = Path(release_dir)
    policy = load_policy(release, backend=backend, engine=engine)
    try:
        inputs, expected = _load_reference(
            Path(reference) if reference else release / REFERENCE_FILE, policy.manifest
        )
        cases = len(next(iter(inputs.values())))
        max_abs, max_rel, finite, close = 0.0, 0.0, True, True
        policy.reset_state()
        for i in range(cases):
            raw = policy.step_raw({name: values[i] for name, values in inputs.items()})
            for name, want in expected.items():
                got = raw[name].astype(np.float64)
                ref = want[i].astype(np.float64)
                if not (np.all(np.isfinite(got)) and np.all(np.isfinite(ref))):
                    finite = False
                    continue
                diff = np.abs(got - ref)
                max_abs = max(max_abs, float(diff.max()))
                max_rel = max(max_rel, float((diff / np.maximum(np.abs(ref), 1e-6)).max()))
                close = close and bool(np.all(diff <= atol + rtol * np.abs(ref)))
        return ParityResult(
            passed=finite and close,
            max_abs_error=max_abs,
            max_rel_error=max_rel,
            finite=finite,
            atol=atol,
            rtol=rtol,
            backend=policy.backend_name,
            cases=cases,
        )
    finally:
        policy.close()


def register(subparsers: Any) -> None:
    par = subparsers.add_parser(
        "parity", help="robot: compare the deployed backend with reference.npz (JSON)"
    )
    par.add_argument("--release", type=Path, required=True, help="release directory")
    par.add_argument("--engine", type=Path, help="TensorRT engine file")
    par.add_argument("--backend", default="auto", choices=BACKEND_KINDS)
    par.add_argument("--precision", default="fp32", choices=sorted(PRECISION_TOLERANCES))
    par.add_argument("--atol", type=float, help="override the precision's absolute tolerance")
    par.add_argument("--rtol", type=float, help="override the precision's relative tolerance")
    par.add_argument("--reference", type=Path, help=f"default: RELEASE/{REFERENCE_FILE}")
    par.set_defaults(handler=run_parity)


def run_parity(args: argparse.Namespace) -> int:
    result = check_parity(
        args.release,
        backend=args.backend,
        engine=args.engine,
        precision=args.precision,
        atol=args.atol,
        rtol=args.rtol,
        reference=args.reference,
    )
    print(json.dumps(result.to_dict(), sort_keys=True))
    return 0 if result.passed else 1
