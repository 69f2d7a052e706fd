"""Trainers' deploy configs (Isaac Lab, unitree_rl_gym) read into one neutral description.

The key names and their meanings come from these real files (facts only, no code):

- Isaac Lab deploy config, as written by unitree_rl_lab's `export_deploy_cfg` from a
  ManagerBasedRLEnv (unitreerobotics/unitree_rl_lab,
  source/unitree_rl_lab/unitree_rl_lab/utils/export_deploy_cfg.py; example:
  deploy/robots/g1/config/policy/velocity/v0/params/deploy.yaml beside exported/policy.onnx, whose
  input `obs` is [1, 480] and output `actions` [1, 29]): `step_dt` (sim.dt x decimation),
  `default_joint_pos` (policy joint order), `joint_ids_map`, `stiffness`, `damping`,
  `actions.<term>.{scale, offset, clip, joint_ids}` with per-joint lists (offset is the default pose
  under use_default_offset; clip, per joint [low, high], bounds the result of raw * scale + offset
  as in Isaac Lab's JointAction), and `observations.<term>.{scale, clip, history_length}` where
  `scale` has one value per element (so its length is the term's width) and history_length 0 is
  written as 1. Isaac Lab's own params/env.yaml names `sim.dt` and `decimation`, accepted here in
  place of `step_dt`.
- unitree_rl_gym (unitreerobotics/unitree_rl_gym): deploy/deploy_mujoco/configs/{g1,h1,h1_2}.yaml
  read by deploy/deploy_mujoco/deploy_mujoco.py (`simulation_dt` x `control_decimation`),
  deploy/deploy_real/configs/{g1,h1,h1_2}.yaml read by deploy/deploy_real/config.py (`control_dt`),
  and go2.yaml with deploy_go2.py (stored at commit a1a6e8d, adds `lin_vel_scale`). Keys:
  `num_obs`, `num_actions`, `default_angles`, `action_scale` (target = raw * action_scale +
  default_angles), `ang_vel_scale`, `dof_pos_scale`, `dof_vel_scale`, `cmd_scale`, `kps`, `kds`.
  The configs do not list observation terms; the deploy scripts build them in a fixed order, so the
  layout is recorded only when num_obs matches one of those scripts (UNITREE_LAYOUTS).

The format is decided by the default-pose key each format must have: `default_joint_pos` (Isaac
Lab) or `default_angles` (unitree_rl_gym); `fmt` forces one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from jetpolicy.common.errors import JetpolicyError
from jetpolicy.common.manifest import ObservationTerm

__all__ = [
    "FORMATS",
    "FORMAT_KEYS",
    "UNBOUNDED",
    "UNITREE_LAYOUTS",
    "DeployConfig",
    "DeployConfigError",
    "detect_format",
    "load_deploy_config",
    "parse_deploy_config",
    "read_yaml",
]

FORMATS = ("isaaclab", "unitree")
# The manifest's limits are per element and JSON has no infinity: a term without a clip, next to
# one with a clip, gets float32's largest value.
UNBOUNDED = 3.4028234663852886e38
# The key that decides the format when --format is not given.
FORMAT_KEYS: Dict[str, str] = {"isaaclab": "default_joint_pos", "unitree": "default_angles"}

# Observation order of unitree_rl_gym's deploy scripts, as (term, width, scale key); width None
# means num_actions, and a None scale key means the script applies no scale (1.0).
_UnitreeTerm = Tuple[str, Optional[int], Optional[str]]
UNITREE_LAYOUTS: Dict[str, List[_UnitreeTerm]] = {
    # deploy_mujoco.py and deploy_real.py (G1, H1, H1_2): 11 + 3 x num_actions.
    "gait": [
        ("base_ang_vel", 3, "ang_vel_scale"),
        ("projected_gravity", 3, None),
        ("velocity_command", 3, "cmd_scale"),
        ("joint_pos_rel", None, "dof_pos_scale"),
        ("joint_vel", None, "dof_vel_scale"),
        ("last_action", None, None),
        ("gait_phase_sin_cos", 2, None),
    ],
    # deploy_go2.py: 12 + 3 x num_actions, base linear velocity first, no gait phase.
    "quadruped": [
        ("base_lin_vel", 3, "lin_vel_scale"),
        ("base_ang_vel", 3, "ang_vel_scale"),
        ("projected_gravity", 3, None),
        ("velocity_command", 3, "cmd_scale"),
        ("joint_pos_rel", None, "dof_pos_scale"),
        ("joint_vel", None, "dof_vel_scale"),
        ("last_action", None, None),
    ],
}


class DeployConfigError(JetpolicyError):
    """A deploy config is unreadable, of an unknown format, or inconsistent (with itself or the model)."""


@dataclass(frozen=True)
class DeployConfig:
    """What a deploy config says about the policy, in the policy's action order.

    `action_claim` / `observation_claim` say where the counts came from, for error messages
    ("num_actions 12", "observations terms x history_length add up to 480").
    """

    path: Path
    format: str
    control_rate_hz: float
    action_scale: List[float]
    action_offset: List[float]
    default_pose: List[float]
    action_claim: str
    observation_width: int
    observation_claim: str
    action_low: Optional[List[float]] = None
    action_high: Optional[List[float]] = None
    observation_terms: List[ObservationTerm] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def action_count(self) -> int:
        return len(self.action_scale)


def read_yaml(path: Path) -> Dict[str, Any]:
    """Load a YAML mapping without running code.

    Isaac Lab's dumps carry Python tags: tuples (`!!python/tuple`) and `joint_ids` as
    `!!python/object/apply:builtins.slice`. Those two are rebuilt as plain values; any other
    Python tag is refused, as yaml.safe_load would.
    """
    import yaml

    # A subclass, so the two constructors do not leak into yaml.SafeLoader for other callers.
    loader: Any = type("DeployConfigLoader", (yaml.SafeLoader,), {})

    def tuple_as_list(constructor: Any, node: Any) -> List[Any]:
        return list(constructor.construct_sequence(node, deep=True))

    def make_slice(constructor: Any, node: Any) -> slice:
        return slice(*constructor.construct_sequence(node, deep=True))

    loader.add_constructor("tag:yaml.org,2002:python/tuple", tuple_as_list)
    loader.add_constructor("tag:yaml.org,2002:python/object/apply:builtins.slice", make_slice)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeployConfigError(
            f"cannot read deploy config {path}: {exc.strerror or exc}", "pass the file"
        ) from exc
    try:
        data = yaml.load(text, Loader=loader)  # a SafeLoader subclass: builds no objects
    except yaml.YAMLError as exc:
        raise DeployConfigError(
            f"deploy config {path} is not readable YAML: {' '.join(str(exc).split())}",
            "pass the deploy.yaml / configs/*.yaml file the trainer wrote",
        ) from None
    if not isinstance(data, dict):
        raise DeployConfigError(
            f"deploy config {path} must be a YAML mapping, got {type(data).__name__}",
            "pass the deploy.yaml / configs/*.yaml file the trainer wrote",
        )
    return data


def detect_format(raw: Mapping[str, Any], path: Path) -> str:
    found = [fmt for fmt, key in FORMAT_KEYS.items() if key in raw]
    if len(found) == 1:
        return found[0]
    first, second = (f"'{FORMAT_KEYS[f]}' ({f})" for f in FORMATS)
    if found:
        raise DeployConfigError(
            f"deploy config {path} has both {first} and {second}", "force one with --format"
        )
    hint = "pass --format isaaclab|unitree, or the file the deploy tooling wrote"
    if "decimation" in raw and "scene" in raw:
        hint = (
            "this looks like Isaac Lab's params/env.yaml, which has no per-joint default pose or "
            "observation widths; pass params/deploy.yaml (export_deploy_cfg) instead"
        )
    raise DeployConfigError(f"deploy config {path} has neither {first} nor {second}", hint)


def _where(path: Path, key: str) -> str:
    return f"deploy config {path}: '{key}'"


def _number(raw: Any, key: str, path: Path) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise DeployConfigError(f"{_where(path, key)} must be a finite number, got {raw!r}", "fix the config")
    return float(raw)


def _count(raw: Any, key: str, path: Path) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
        raise DeployConfigError(
            f"{_where(path, key)} must be a positive integer, got {raw!r}", "fix the config"
        )
    return raw


def _numbers(raw: Any, key: str, path: Path, length: Optional[int] = None, per: str = "") -> List[float]:
    """A list of numbers; a single number is repeated `length` times when a length is known."""
    if length is not None and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return [_number(raw, key, path)] * length
    kind = "a number or a list of numbers" if length is not None else "a list of numbers"
    if not isinstance(raw, list):
        raise DeployConfigError(f"{_where(path, key)} must be {kind}, got {raw!r}", "fix the config")
    values = [_number(v, key, path) for v in raw]
    if length is not None and len(values) != length:
        raise DeployConfigError(
            f"{_where(path, key)} has {len(values)} values but {per or length} needs {length}",
            "give one value per joint, in the policy's joint order",
        )
    return values


def _require(raw: Mapping[str, Any], key: str, path: Path, fmt: str) -> Any:
    if key not in raw:
        raise DeployConfigError(
            f"deploy config {path} ({fmt}) has no '{key}'", f"add '{key}' or check --format"
        )
    return raw[key]


def _rate(dt: float, what: str, path: Path) -> float:
    if dt <= 0:
        raise DeployConfigError(
            f"deploy config {path}: {what} gives a control period of {dt:g} s, so the control rate "
            "is not positive",
            "fix the time step and decimation",
        )
    return 1.0 / dt


def _period(
    raw: Mapping[str, Any], path: Path, direct: str, base: Tuple[Any, str], decimation: Tuple[Any, str]
) -> float:
    """The control period from `direct`, or from base dt x decimation; both given must agree."""
    periods: List[Tuple[float, str]] = []
    if direct in raw:
        value = _number(raw[direct], direct, path)
        periods.append((value, f"{direct} {value:g}"))
    (dt_raw, dt_key), (dec_raw, dec_key) = base, decimation
    if dt_raw is not None and dec_raw is not None:
        dt = _number(dt_raw, dt_key, path)
        if isinstance(dec_raw, bool) or not isinstance(dec_raw, int):
            raise DeployConfigError(f"{_where(path, dec_key)} must be an integer, got {dec_raw!r}", "fix it")
        periods.append((dt * dec_raw, f"{dt_key} {dt:g} x {dec_key} {dec_raw}"))
    if not periods:
        raise DeployConfigError(
            f"deploy config {path} gives no control period", f"add '{direct}' or '{dt_key}' and '{dec_key}'"
        )
    period, what = periods[0]
    for other, other_what in periods[1:]:
        if not math.isclose(period, other, rel_tol=1e-6):
            raise DeployConfigError(
                f"deploy config {path}: {what} = {period:g} s but {other_what} = {other:g} s",
                "make the two agree (they are the same control period)",
            )
    return _rate(period, what, path)


def _joint_indices(raw: Any, term: str, joints: int, path: Path) -> List[int]:
    key = f"actions.{term}.joint_ids"
    if raw is None:
        return list(range(joints))
    if isinstance(raw, slice):
        return list(range(joints))[raw]
    if isinstance(raw, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in raw):
        bad = [i for i in raw if not 0 <= i < joints]
        if bad:
            raise DeployConfigError(
                f"{_where(path, key)} names joints {bad} but default_joint_pos has {joints}",
                "use indices into default_joint_pos",
            )
        return list(raw)
    raise DeployConfigError(
        f"{_where(path, key)} must be a slice or a list of indices, got {raw!r}", "fix it"
    )


def _clip_pairs(raw: Any, key: str, length: int, path: Path) -> Tuple[List[float], List[float]]:
    if not isinstance(raw, list) or len(raw) != length:
        got = len(raw) if isinstance(raw, list) else repr(raw)
        raise DeployConfigError(
            f"{_where(path, key)} has {got} entries but the term drives {length} joints",
            "give one [low, high] pair per joint",
        )
    low: List[float] = []
    high: List[float] = []
    for pair in raw:
        if not isinstance(pair, list) or len(pair) != 2:
            raise DeployConfigError(
                f"{_where(path, key)} entry {pair!r} is not [low, high]", "fix the limits"
            )
        lo, hi = _numbers(pair, key, path)
        if lo > hi:
            raise DeployConfigError(f"{_where(path, key)} entry {pair!r} has low > high", "fix the limits")
        low.append(lo)
        high.append(hi)
    return low, high


def _isaaclab(raw: Mapping[str, Any], path: Path) -> DeployConfig:
    sim: Mapping[str, Any] = raw["sim"] if isinstance(raw.get("sim"), dict) else {}
    rate = _period(raw, path, "step_dt", (sim.get("dt"), "sim.dt"), (raw.get("decimation"), "decimation"))
    default = _numbers(_require(raw, "default_joint_pos", path, "isaaclab"), "default_joint_pos", path)
    joints = len(default)
    for key in ("joint_ids_map", "stiffness", "damping"):
        if key in raw:
            _numbers(raw[key], key, path, joints, per=f"default_joint_pos ({joints} joints)")
    actions = _require(raw, "actions", path, "isaaclab")
    if not isinstance(actions, dict) or not actions:
        raise DeployConfigError(f"{_where(path, 'actions')} must map action terms to settings", "fix it")
    scale: List[float] = []
    offset: List[float] = []
    pose: List[float] = []
    low: List[float] = []
    high: List[float] = []
    clipped = False
    widths: List[str] = []
    for term, cfg in actions.items():
        if not isinstance(cfg, dict):
            raise DeployConfigError(f"{_where(path, f'actions.{term}')} must be a mapping", "fix it")
        indices = _joint_indices(cfg.get("joint_ids"), term, joints, path)
        width = len(indices)
        per = f"actions.{term} ({width} joints)"
        scale += _numbers(cfg.get("scale", 1.0), f"actions.{term}.scale", path, width, per)
        offset += _numbers(cfg.get("offset", 0.0), f"actions.{term}.offset", path, width, per)
        pose += [default[i] for i in indices]
        if cfg.get("clip") is not None:
            lo, hi = _clip_pairs(cfg["clip"], f"actions.{term}.clip", width, path)
            clipped = True
        else:
            lo, hi = [-UNBOUNDED] * width, [UNBOUNDED] * width
        low += lo
        high += hi
        widths.append(f"{term}: {width}")
    terms = _isaaclab_observations(_require(raw, "observations", path, "isaaclab"), path)
    total = sum(t.size for t in terms)
    notes = []
    if "joint_ids_map" in raw:
        notes.append(
            "actions are in the policy's joint order; the config's joint_ids_map maps them to the "
            "robot SDK's motor order"
        )
    return DeployConfig(
        path=path,
        format="isaaclab",
        control_rate_hz=rate,
        action_scale=scale,
        action_offset=offset,
        default_pose=pose,
        action_claim=f"actions ({', '.join(widths)}) add up to {len(scale)}",
        observation_width=total,
        observation_claim=f"observations (width x history_length) add up to {total}",
        action_low=low if clipped else None,
        action_high=high if clipped else None,
        observation_terms=terms,
        notes=notes,
    )


def _isaaclab_observations(raw: Any, path: Path) -> List[ObservationTerm]:
    if not isinstance(raw, dict) or not raw:
        raise DeployConfigError(
            f"{_where(path, 'observations')} must map observation terms to settings", "fix"
        )
    terms: List[ObservationTerm] = []
    for name, cfg in raw.items():
        key = f"observations.{name}"
        if not isinstance(cfg, dict) or not isinstance(cfg.get("scale"), list) or not cfg["scale"]:
            raise DeployConfigError(
                f"{_where(path, key + '.scale')} must list one scale per element (it gives the term's width)",
                "export the config with export_deploy_cfg, which writes per-element scales",
            )
        scale = _numbers(cfg["scale"], f"{key}.scale", path)
        history = cfg.get("history_length", 1)
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise DeployConfigError(
                f"{_where(path, key + '.history_length')} must be a non-negative integer, got {history!r}",
                "fix it",
            )
        clip = None
        if cfg.get("clip") is not None:
            clip = _numbers(cfg["clip"], f"{key}.clip", path, 2, per=f"{key}.clip ([low, high])")
            if clip[0] > clip[1]:
                raise DeployConfigError(f"{_where(path, key + '.clip')} has low > high", "fix the limits")
        # Isaac Lab's history_length 0 means no history: one frame.
        terms.append(ObservationTerm(str(name), len(scale), max(history, 1), scale, clip))
    return terms


def _unitree_layout(
    raw: Mapping[str, Any], path: Path, num_obs: int, num_actions: int
) -> Tuple[List[ObservationTerm], List[str]]:
    for kind, spec in UNITREE_LAYOUTS.items():
        if kind == "quadruped" and "lin_vel_scale" not in raw:
            continue
        widths = [num_actions if w is None else w for _, w, _ in spec]
        if sum(widths) != num_obs:
            continue
        terms = []
        for (name, _, scale_key), width in zip(spec, widths):
            if scale_key is None:
                scale = [1.0] * width
            else:
                scale = _numbers(
                    _require(raw, scale_key, path, "unitree"),
                    scale_key,
                    path,
                    width,
                    per=f"observation term {name} ({width} values)",
                )
            terms.append(ObservationTerm(name, width, 1, scale, None))
        return terms, []
    note = (
        f"observation layout not recorded: num_obs {num_obs} with num_actions {num_actions} matches "
        "none of unitree_rl_gym's deploy scripts (11 + 3 x num_actions, or 12 + 3 x num_actions with "
        "lin_vel_scale)"
    )
    return [], [note]


def _unitree(raw: Mapping[str, Any], path: Path) -> DeployConfig:
    rate = _period(
        raw,
        path,
        "control_dt",
        (raw.get("simulation_dt"), "simulation_dt"),
        (raw.get("control_decimation"), "control_decimation"),
    )
    num_actions = _count(_require(raw, "num_actions", path, "unitree"), "num_actions", path)
    num_obs = _count(_require(raw, "num_obs", path, "unitree"), "num_obs", path)
    per = f"num_actions {num_actions}"
    default = _numbers(
        _require(raw, "default_angles", path, "unitree"), "default_angles", path, num_actions, per
    )
    for key in ("kps", "kds"):
        if key in raw:
            _numbers(raw[key], key, path, num_actions, per)
    scale = _numbers(_require(raw, "action_scale", path, "unitree"), "action_scale", path, num_actions, per)
    terms, notes = _unitree_layout(raw, path, num_obs, num_actions)
    return DeployConfig(
        path=path,
        format="unitree",
        control_rate_hz=rate,
        action_scale=scale,
        # target_dof_pos = action * action_scale + default_angles in the deploy scripts.
        action_offset=list(default),
        default_pose=default,
        action_claim=f"num_actions {num_actions}",
        observation_width=num_obs,
        observation_claim=f"num_obs {num_obs}",
        observation_terms=terms,
        notes=notes,
    )


def parse_deploy_config(raw: Mapping[str, Any], path: Path, fmt: Optional[str] = None) -> DeployConfig:
    """Read a loaded config of the given (or detected) format; every inconsistency names the key."""
    if fmt is not None and fmt not in FORMATS:
        raise DeployConfigError(f"unknown deploy config format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    chosen = fmt or detect_format(raw, path)
    return _isaaclab(raw, path) if chosen == "isaaclab" else _unitree(raw, path)


def load_deploy_config(path: Path, fmt: Optional[str] = None) -> DeployConfig:
    return parse_deploy_config(read_yaml(path), path, fmt)
