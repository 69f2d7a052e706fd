"""`jetpolicy import`: a policy directory from an ONNX model someone else exported.

Names, shapes and dtypes come from the model itself (as `jetpolicy export` reads them back); the
control rate comes from `--rate-hz` or from the trainer's deploy config (Isaac Lab or
unitree_rl_gym, see deploy_config.py for the files the key names come from), which also gives:

- the action transform: published = raw * scale + offset (per joint), clipped to the config's
  limits when it has them;
- the safe action, holding the default pose. The runner publishes `safe_action` unchanged (only
  clipped to low/high, robot/policy.py), i.e. in the transformed space, so it is the default joint
  positions themselves. The raw model output that maps there is (default - offset) / scale, zero
  whenever offset is the default pose (unitree_rl_gym, Isaac Lab's use_default_offset); writing
  that raw value would make a stale robot command its offsets, not its default pose;
- the observation layout (terms, widths, scales, history lengths), documentation for the sender.

Every disagreement between config and model stops the import before anything is written, and
the written directory is checked with the same validator as `jetpolicy validate`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from jetpolicy import __version__
from jetpolicy.common.errors import JetpolicyError, PolicyValidationError
from jetpolicy.common.manifest import PolicyManifest, TensorSpec
from jetpolicy.controller.deploy_config import FORMATS, DeployConfig, DeployConfigError, load_deploy_config
from jetpolicy.controller.export import tensor_specs_from_onnx, write_release
from jetpolicy.controller.validation import validate_policy

__all__ = [
    "ImportResult",
    "PolicyImportError",
    "check_against_model",
    "import_policy",
    "manifest_sections",
    "parse_state_arg",
    "register",
]


class PolicyImportError(JetpolicyError):
    """The model or the import arguments cannot make a policy directory."""


@dataclass(frozen=True)
class ImportResult:
    manifest: PolicyManifest
    notes: List[str] = field(default_factory=list)


def parse_state_arg(text: str) -> Tuple[str, str]:
    """`h_in:h_out` -> ("h_in", "h_out"): a recurrent input fed from an output each tick."""
    state_in, sep, state_out = text.partition(":")
    if not sep or not state_in or not state_out:
        raise PolicyImportError(f"bad --state {text!r}", "write INPUT:OUTPUT, e.g. h_in:h_out")
    return state_in, state_out


def _only(specs: List[TensorSpec], kind: str, model: Path) -> TensorSpec:
    if len(specs) != 1:
        raise PolicyImportError(
            f"a deploy config describes one {kind}, but {model.name} has {len(specs)}: "
            f"{[s.name for s in specs]}",
            "mark recurrent pairs with --state INPUT:OUTPUT, or import without --deploy-config",
        )
    return specs[0]


def check_against_model(
    config: DeployConfig, model: Path, observation: TensorSpec, action: TensorSpec
) -> None:
    """The config's action and observation counts must be the model's; errors name both and the files."""
    if config.action_count != action.size:
        raise DeployConfigError(
            f"deploy config {config.path} says {config.action_claim} but {model.name} output "
            f"'{action.name}' has {action.size} values",
            "pass the deploy config the policy was trained with",
        )
    if config.observation_width != observation.size:
        raise DeployConfigError(
            f"deploy config {config.path} says {config.observation_claim} but {model.name} input "
            f"'{observation.name}' has {observation.size} values",
            "pass the deploy config the policy was trained with",
        )
    if config.action_low is not None and config.action_high is not None:
        outside = [
            i
            for i, (pose, lo, hi) in enumerate(
                zip(config.default_pose, config.action_low, config.action_high)
            )
            if not lo <= pose <= hi
        ]
        if outside:
            i = outside[0]
            raise DeployConfigError(
                f"deploy config {config.path}: default pose of joint {i} ({config.default_pose[i]:g}) is "
                f"outside its action clip [{config.action_low[i]:g}, {config.action_high[i]:g}] "
                f"({len(outside)} joints in all), so the safe action could not hold the default pose",
                "fix the default pose or the clip",
            )


def manifest_sections(config: DeployConfig, observation: str, action: str) -> Dict[str, Any]:
    """The manifest's action, safe_action and observation_layout sections from a checked config."""
    transform: Dict[str, Any] = {"scale": config.action_scale, "offset": config.action_offset}
    if config.action_low is not None:
        transform["low"] = config.action_low
        transform["high"] = config.action_high
    sections: Dict[str, Any] = {
        "action": {action: transform},
        "safe_action": {action: list(config.default_pose)},
    }
    if config.observation_terms:
        sections["observation_layout"] = {observation: [asdict(t) for t in config.observation_terms]}
    return sections


def _created_by(model: Path, config: Optional[DeployConfig]) -> str:
    text = f"jetpolicy {__version__} import of {model.resolve()}"
    if config is not None:
        text += f" with {config.format} deploy config {config.path.resolve()}"
    return text


def import_policy(
    model: Path,
    out_dir: Path,
    deploy_config: Optional[Path] = None,
    fmt: Optional[str] = None,
    rate_hz: Optional[float] = None,
    name: Optional[str] = None,
    state: Sequence[Tuple[str, str]] = (),
) -> ImportResult:
    """Write out_dir/policy.onnx (a copy of model) and a checked policy.json; the model is unchanged."""
    if not model.is_file():
        raise PolicyImportError(f"model {model} does not exist", "pass the exported .onnx file")
    if fmt is not None and deploy_config is None:
        raise PolicyImportError("--format needs --deploy-config", "pass the deploy config to read")
    if deploy_config is not None and rate_hz is not None:
        raise PolicyImportError(
            "--rate-hz and --deploy-config both give the control rate", "drop --rate-hz: the config has it"
        )
    if deploy_config is None and rate_hz is None:
        raise PolicyImportError(
            "no control rate: the model does not carry one", "pass --rate-hz or --deploy-config"
        )
    inputs, outputs = tensor_specs_from_onnx(model)
    config = None
    extra: Dict[str, Any] = {}
    if deploy_config is not None:
        config = load_deploy_config(deploy_config, fmt)
        state_in, state_out = {i for i, _ in state}, {o for _, o in state}
        observation = _only([s for s in inputs if s.name not in state_in], "observation input", model)
        action = _only([s for s in outputs if s.name not in state_out], "action output", model)
        check_against_model(config, model, observation, action)
        extra = manifest_sections(config, observation.name, action.name)
        rate_hz = config.control_rate_hz
    if rate_hz is None:  # unreachable: checked above; narrows the type
        raise PolicyImportError("no control rate", "pass --rate-hz or --deploy-config")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=".import-", dir=out_dir) as tmp:
            copy = Path(tmp) / "policy.onnx"
            shutil.copyfile(model, copy)
            manifest = write_release(
                copy,
                out_dir,
                name=name or out_dir.resolve().name,
                created_by=_created_by(model, config),
                control_rate_hz=rate_hz,
                state=state,
                extra=extra,
            )
    except Exception:
        # write_release checks the manifest before it moves anything: an older release stays.
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    try:
        validate_policy(out_dir / "policy.onnx", out_dir / "policy.json")
    except PolicyValidationError:
        # Never leave a directory that `jetpolicy validate` (and so the deploy) would refuse.
        for written in ("policy.onnx", "policy.json"):
            (out_dir / written).unlink()
        raise
    return ImportResult(manifest, list(config.notes) if config else [])


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import", help="policy directory from an existing ONNX (+ Isaac Lab / unitree_rl_gym deploy config)"
    )
    parser.add_argument("model", type=Path, metavar="MODEL.onnx", help="the exported ONNX model (copied)")
    parser.add_argument("--out", type=Path, required=True, help="policy directory to write")
    parser.add_argument(
        "--deploy-config", type=Path, help="deploy.yaml (Isaac Lab) or configs/*.yaml (unitree)"
    )
    parser.add_argument("--format", choices=FORMATS, help="config format (default: detected from its keys)")
    parser.add_argument("--rate-hz", type=float, help="control rate, when there is no deploy config")
    parser.add_argument("--name", help="policy name (default: the --out directory's name)")
    parser.add_argument("--state", action="append", default=[], metavar="IN:OUT", help="recurrent state pair")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    result = import_policy(
        args.model,
        args.out,
        deploy_config=args.deploy_config,
        fmt=args.format,
        rate_hz=args.rate_hz,
        name=args.name,
        state=[parse_state_arg(s) for s in args.state],
    )
    manifest = result.manifest
    print(
        f"wrote {args.out / 'policy.onnx'} (sha256 {manifest.sha256[:16]}, "
        f"{manifest.control_rate_hz:g} Hz) and policy.json; valid"
    )
    for note in result.notes:
        print(f"note: {note}")
    return 0
