"""The policy manifest: what a policy expects and produces, and how it is checked.

The manifest travels with the ONNX file (`policy.json` beside `policy.onnx`) and is the single
description the controller, the runner and the rollout gates agree on.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from jetpolicy.common.errors import ManifestError
from jetpolicy.common.schema import (
    SchemaProblem,
    describe_problems,
    load_schema,
    parse_checked,
    version_problem,
)

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_SCHEMA",
    "RELEASE_FILES",
    "SUPPORTED_DTYPES",
    "TENSORRT_PRECISIONS",
    "TENSOR_ROLES",
    "ActionTransform",
    "CalibrationCache",
    "Normalization",
    "ObservationTerm",
    "PolicyManifest",
    "ShapeProfile",
    "StatePair",
    "TensorRTSettings",
    "TensorSpec",
    "load_manifest",
    "manifest_from_dict",
    "release_id",
    "sha256_file",
]

# The manifest's schema major version is its `format` field (docs/schemas.md).
MANIFEST_FORMAT = 1
MANIFEST_SCHEMA = "policy-manifest"
SUPPORTED_DTYPES = ("float32", "float16", "int64", "int32", "bool")
TENSOR_ROLES = ("observation", "state", "action", "output")
# Builder precisions of the trtexec module (module_utils/jetpolicy_trtexec.py PRECISIONS).
TENSORRT_PRECISIONS = ("fp32", "fp16", "int8", "best")
# What policy_artifact puts in a release directory itself: a calibration cache may not take a name.
RELEASE_FILES = ("policy.onnx", "policy.json", "policy.json.sig", "reference.npz")


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: name, static shape, dtype and what it is for."""

    name: str
    shape: List[int]
    dtype: str = "float32"
    role: str = "observation"

    @property
    def size(self) -> int:
        n = 1
        for dim in self.shape:
            n *= dim
        return n


@dataclass(frozen=True)
class StatePair:
    """A recurrent state: the output fed back into the input at the next tick."""

    input: str
    output: str


@dataclass(frozen=True)
class Normalization:
    mean: List[float]
    std: List[float]


@dataclass(frozen=True)
class ActionTransform:
    """action = clip(raw * scale + offset, low, high); each list has one value per element."""

    scale: Optional[List[float]] = None
    offset: Optional[List[float]] = None
    low: Optional[List[float]] = None
    high: Optional[List[float]] = None


@dataclass(frozen=True)
class ObservationTerm:
    """One named slice of an observation input, as the trainer's deploy config describes it.

    The input holds the terms one after another, each as `history` frames (oldest first) of `width`
    values. `scale` (one per value) and `clip` ([low, high]) say how the sender must prepare the term;
    the runner does not apply them (use `normalization` for that), they document the contract.
    """

    name: str
    width: int
    history: int = 1
    scale: Optional[List[float]] = None
    clip: Optional[List[float]] = None

    @property
    def size(self) -> int:
        return self.width * self.history


@dataclass(frozen=True)
class CalibrationCache:
    """An INT8 calibration cache shipped beside policy.json: its file name and content sha256."""

    file: str
    sha256: str


@dataclass(frozen=True)
class ShapeProfile:
    """One input's TensorRT optimisation profile; the runner still feeds the manifest's shape."""

    min: List[int]
    opt: List[int]
    max: List[int]


@dataclass(frozen=True)
class TensorRTSettings:
    """How the robot builds this policy's engine (roles/tensorrt_engine reads it from the release)."""

    precision: Optional[str] = None
    calibration_cache: Optional[CalibrationCache] = None
    profiles: Dict[str, ShapeProfile] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        for key in [k for k, v in data.items() if v is None or v == {}]:
            del data[key]
        return data


@dataclass(frozen=True)
class PolicyManifest:
    name: str
    sha256: str
    control_rate_hz: float
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    created_by: str = ""
    created_at: str = ""
    state: List[StatePair] = field(default_factory=list)
    normalization: Dict[str, Normalization] = field(default_factory=dict)
    action: Dict[str, ActionTransform] = field(default_factory=dict)
    # Published as-is when observations go stale, so it is in the transformed action space
    # (after scale/offset; the runtime only clips it to low/high), not the model's raw output.
    safe_action: Dict[str, List[float]] = field(default_factory=dict)
    observation_layout: Dict[str, List[ObservationTerm]] = field(default_factory=dict)
    tensorrt: Optional[TensorRTSettings] = None
    format: int = MANIFEST_FORMAT

    @property
    def observation_inputs(self) -> List[TensorSpec]:
        return [t for t in self.inputs if t.role == "observation"]

    @property
    def state_inputs(self) -> List[TensorSpec]:
        return [t for t in self.inputs if t.role == "state"]

    @property
    def action_outputs(self) -> List[TensorSpec]:
        return [t for t in self.outputs if t.role == "action"]

    @property
    def control_period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def output(self, name: str) -> TensorSpec:
        for spec in self.outputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        # Keep the file small and readable: drop empty optional sections.
        for key in ("state", "normalization", "action", "safe_action", "observation_layout"):
            if not data[key]:
                del data[key]
        entries = list(data.get("action", {}).values())
        entries += [term for terms in data.get("observation_layout", {}).values() for term in terms]
        for entry in entries:
            for key in [k for k, v in entry.items() if v is None]:
                del entry[key]
        if self.tensorrt is None:
            del data["tensorrt"]
        else:
            data["tensorrt"] = self.tensorrt.to_dict()
        return data

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def release_id(manifest: PolicyManifest) -> str:
    """The name of the policy's release directory on the robot (``releases/<id>``).

    Without a ``tensorrt`` section it is the model's sha256[:16], as for every release before the
    section existed. With one, the section (the calibration cache's sha256 and the profiles
    included) is hashed with the model's sha256: a release directory is immutable once staged, so a
    new cache or profile must make a new release rather than meet the old one's files.
    """
    if manifest.tensorrt is None:
        return manifest.sha256[:16]
    identity = {"model_sha256": manifest.sha256, "tensorrt": manifest.tensorrt.to_dict()}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def load_manifest(path: Path) -> PolicyManifest:
    """Read and check a manifest file; every problem is reported with the file it came from."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"manifest {path} does not exist", "write it with `jetpolicy export`") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"manifest {path} is not valid JSON: {exc}", "regenerate it") from None
    return manifest_from_dict(raw, source=str(path))


def _require(raw: Mapping[str, Any], key: str, kind: type, source: str) -> Any:
    if key not in raw:
        raise ManifestError(f"{source}: missing required field '{key}'", "add it to the manifest")
    value = raw[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind):
        raise ManifestError(
            f"{source}: field '{key}' must be {kind.__name__}, got {type(value).__name__}",
            "fix the manifest",
        )
    return value


def _tensor(raw: Any, default_role: str, source: str) -> TensorSpec:
    if not isinstance(raw, dict):
        raise ManifestError(f"{source}: tensor entries must be objects, got {raw!r}", "fix the manifest")
    name = _require(raw, "name", str, source)
    shape = _require(raw, "shape", list, f"{source}: tensor '{name}'")
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ManifestError(
            f"{source}: tensor '{name}' needs a static shape of positive integers, got {shape}",
            "export the policy with fixed dimensions (batch 1)",
        )
    dtype = raw.get("dtype", "float32")
    if dtype not in SUPPORTED_DTYPES:
        raise ManifestError(f"{source}: tensor '{name}' has unsupported dtype {dtype!r}", "use float32")
    role = raw.get("role", default_role)
    if role not in TENSOR_ROLES:
        raise ManifestError(
            f"{source}: tensor '{name}' has unknown role {role!r}", f"use one of {', '.join(TENSOR_ROLES)}"
        )
    return TensorSpec(name=name, shape=list(shape), dtype=dtype, role=role)


def _floats(raw: Any, length: int, what: str, source: str, allow_inf: bool = False) -> List[float]:
    """`length` numbers; NaN never (Python's json reads a bare NaN), +-Infinity only if allowed."""
    if not isinstance(raw, list) or len(raw) != length:
        got = len(raw) if isinstance(raw, list) else type(raw).__name__
        raise ManifestError(f"{source}: {what} needs {length} numbers, got {got}", "fix the manifest")
    try:
        values = [float(v) for v in raw]
    except (TypeError, ValueError):
        raise ManifestError(f"{source}: {what} must contain only numbers", "fix the manifest") from None
    bad = [i for i, v in enumerate(values) if math.isnan(v) or (math.isinf(v) and not allow_inf)]
    if bad:
        kind = "NaN or infinite" if not allow_inf else "NaN"
        raise ManifestError(
            f"{source}: {what} has {kind} values at index {', '.join(map(str, bad[:8]))}"
            f"{' ...' if len(bad) > 8 else ''}",
            "write finite numbers (a limit may be omitted, or +-Infinity for no limit on that side)"
            if allow_inf
            else "write finite numbers",
        )
    return values


def _positive_int(raw: Any, what: str, source: str) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw <= 0:
        raise ManifestError(f"{source}: {what} must be a positive integer, got {raw!r}", "fix the manifest")
    return raw


def _layout_terms(tname: str, raw_terms: Any, spec: TensorSpec, source: str) -> List[ObservationTerm]:
    """One input's layout: well-formed, uniquely named terms whose sizes add up to the input's."""
    if not isinstance(raw_terms, list) or not raw_terms:
        raise ManifestError(
            f"{source}: observation_layout[{tname}] must be a non-empty list of terms", "fix the manifest"
        )
    terms: List[ObservationTerm] = []
    where = f"observation_layout[{tname}]"
    for index, term in enumerate(raw_terms):
        if not isinstance(term, dict) or not isinstance(term.get("name"), str) or not term["name"]:
            raise ManifestError(f"{source}: {where}[{index}] needs a 'name'", "fix the manifest")
        what = f"{where}.{term['name']}"
        width = _positive_int(term.get("width"), f"{what}.width", source)
        history = _positive_int(term.get("history", 1), f"{what}.history", source)
        scale = clip = None
        if term.get("scale") is not None:
            scale = _floats(term["scale"], width, f"{what}.scale", source)
        if term.get("clip") is not None:
            clip = _floats(term["clip"], 2, f"{what}.clip", source)
        if clip is not None and clip[0] > clip[1]:
            raise ManifestError(f"{source}: {what}.clip has low > high", "fix the limits")
        terms.append(ObservationTerm(term["name"], width, history, scale, clip))
    names = [t.name for t in terms]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ManifestError(f"{source}: {where} repeats terms {dupes}", "give each term one entry")
    total = sum(t.size for t in terms)
    if total != spec.size:
        raise ManifestError(
            f"{source}: {where} terms add up to {total} values (width x history) "
            f"but input '{tname}' has {spec.size}",
            "make the layout match the model's observation input",
        )
    return terms


def manifest_from_dict(raw: Any, source: str = "manifest") -> PolicyManifest:
    """Check `raw` against the schema and the rules it cannot express; ManifestError names the field."""
    if not isinstance(raw, dict):
        raise ManifestError(f"{source}: top level must be a JSON object", "regenerate the manifest")
    problem = version_problem(raw, "format", MANIFEST_FORMAT)
    if problem:
        newer = isinstance(raw.get("format"), int) and raw["format"] > MANIFEST_FORMAT
        raise ManifestError(
            f"{source}: manifest format is not supported: {problem}",
            "deploy the jetpolicy runtime that exported it (or a newer one) with this policy"
            if newer
            else "regenerate it with this jetpolicy version",
        )

    def refuse(problems: List[SchemaProblem]) -> ManifestError:
        return ManifestError(
            f"{source}: {describe_problems(problems, MANIFEST_SCHEMA)}",
            "fix the manifest or regenerate it with `jetpolicy export` (docs/schemas.md)",
        )

    return parse_checked(load_schema(MANIFEST_SCHEMA), raw, lambda: _parse(raw, source), refuse)


def _parse(raw: Dict[str, Any], source: str) -> PolicyManifest:
    name = _require(raw, "name", str, source)
    sha = _require(raw, "sha256", str, source)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ManifestError(f"{source}: sha256 must be 64 lowercase hex digits", "regenerate the manifest")
    rate = _require(raw, "control_rate_hz", float, source)
    if not 0 < rate <= 10000:
        raise ManifestError(f"{source}: control_rate_hz must be in (0, 10000], got {rate}", "fix the rate")
    inputs = [_tensor(t, "observation", source) for t in _require(raw, "inputs", list, source)]
    outputs = [_tensor(t, "action", source) for t in _require(raw, "outputs", list, source)]
    if not inputs or not outputs:
        raise ManifestError(f"{source}: a policy needs at least one input and one output", "fix the manifest")
    for group, specs in (("input", inputs), ("output", outputs)):
        names = [s.name for s in specs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ManifestError(f"{source}: duplicate {group} names {dupes}", "rename them in the export")
    by_in = {s.name: s for s in inputs}
    by_out = {s.name: s for s in outputs}
    state: List[StatePair] = []
    for pair in raw.get("state", []):
        if not isinstance(pair, dict) or "input" not in pair or "output" not in pair:
            raise ManifestError(f"{source}: state entries need 'input' and 'output'", "fix the manifest")
        s_in, s_out = by_in.get(pair["input"]), by_out.get(pair["output"])
        if s_in is None or s_out is None:
            raise ManifestError(
                f"{source}: state pair {pair['input']} -> {pair['output']} "
                "names a tensor that does not exist",
                "use the model's input and output names",
            )
        if s_in.shape != s_out.shape:
            raise ManifestError(
                f"{source}: state pair {s_in.name} {s_in.shape} -> {s_out.name} {s_out.shape} "
                "differ in shape",
                "the recurrent output must have the input's shape",
            )
        state.append(StatePair(input=s_in.name, output=s_out.name))
    # Inputs named in a state pair are state regardless of what the file says.
    state_inputs = {p.input for p in state}
    state_outputs = {p.output for p in state}
    inputs = [TensorSpec(t.name, t.shape, t.dtype, "state") if t.name in state_inputs else t for t in inputs]
    outputs = [
        TensorSpec(t.name, t.shape, t.dtype, "state") if t.name in state_outputs else t for t in outputs
    ]
    if not any(t.role == "observation" for t in inputs):
        raise ManifestError(f"{source}: no input has role 'observation'", "mark the observation inputs")
    if not any(t.role == "action" for t in outputs):
        raise ManifestError(f"{source}: no output has role 'action'", "mark the action output")

    normalization: Dict[str, Normalization] = {}
    for tname, norm in raw.get("normalization", {}).items():
        spec = by_in.get(tname)
        if spec is None or spec.role != "observation":
            raise ManifestError(f"{source}: normalization for unknown observation '{tname}'", "fix the name")
        std = _floats(norm.get("std"), spec.size, f"normalization[{tname}].std", source)
        if any(s <= 0 for s in std):
            raise ManifestError(f"{source}: normalization[{tname}].std must be > 0", "fix the statistics")
        normalization[tname] = Normalization(
            mean=_floats(norm.get("mean"), spec.size, f"normalization[{tname}].mean", source), std=std
        )
    action: Dict[str, ActionTransform] = {}
    for tname, tr in raw.get("action", {}).items():
        spec = by_out.get(tname)
        if spec is None:
            raise ManifestError(f"{source}: action transform for unknown output '{tname}'", "fix the name")
        # A limit of +-Infinity means none on that side (as an absent one); NaN is never a limit.
        fields = {
            key: _floats(tr[key], spec.size, f"action[{tname}].{key}", source, key in ("low", "high"))
            if tr.get(key) is not None
            else None
            for key in ("scale", "offset", "low", "high")
        }
        low, high = fields["low"], fields["high"]
        if low is not None and high is not None and any(lo > hi for lo, hi in zip(low, high)):
            raise ManifestError(f"{source}: action[{tname}] has low > high", "fix the limits")
        action[tname] = ActionTransform(**fields)
    safe_action: Dict[str, List[float]] = {}
    for tname, values in raw.get("safe_action", {}).items():
        spec = by_out.get(tname)
        if spec is None:
            raise ManifestError(f"{source}: safe_action for unknown output '{tname}'", "fix the name")
        safe_action[tname] = _floats(values, spec.size, f"safe_action[{tname}]", source)
    layout: Dict[str, List[ObservationTerm]] = {}
    raw_layout = raw.get("observation_layout", {})
    if not isinstance(raw_layout, dict):
        raise ManifestError(f"{source}: observation_layout must map input names to terms", "fix the manifest")
    # Checked against the final roles: an input named in a state pair is never an observation.
    final_inputs = {t.name: t for t in inputs}
    for tname, raw_terms in raw_layout.items():
        spec = final_inputs.get(tname)
        if spec is None or spec.role != "observation":
            raise ManifestError(
                f"{source}: observation_layout for unknown observation '{tname}'", "fix the name"
            )
        layout[tname] = _layout_terms(tname, raw_terms, spec, source)
    tensorrt = _tensorrt_settings(raw["tensorrt"], final_inputs, source) if "tensorrt" in raw else None
    return PolicyManifest(
        name=name,
        sha256=sha,
        control_rate_hz=rate,
        inputs=inputs,
        outputs=outputs,
        created_by=str(raw.get("created_by", "")),
        created_at=str(raw.get("created_at", "")),
        state=state,
        normalization=normalization,
        action=action,
        safe_action=safe_action,
        observation_layout=layout,
        tensorrt=tensorrt,
    )


def _dims(raw: Any, what: str, rank: int, source: str) -> List[int]:
    positive = isinstance(raw, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in raw)
    if not positive or not all(d > 0 for d in raw):
        raise ManifestError(
            f"{source}: {what} must be a list of positive integers, got {raw!r}",
            "write the dims as a list, e.g. [1, 48]",
        )
    if len(raw) != rank:
        raise ManifestError(
            f"{source}: {what} has {len(raw)} dims but the input has rank {rank}",
            "give one dim per axis of the input, batch first",
        )
    return list(raw)


def _profile(tname: str, raw: Any, spec: TensorSpec, source: str) -> ShapeProfile:
    """min <= opt <= max on every axis, one dim per axis, and the runner's shape inside [min, max]."""
    where = f"tensorrt.profiles[{tname}]"
    if not isinstance(raw, dict) or any(k not in raw for k in ("min", "opt", "max")):
        raise ManifestError(f"{source}: {where} needs min, opt and max", "give all three shapes")
    rank = len(spec.shape)
    low, opt, high = (_dims(raw[k], f"{where}.{k}", rank, source) for k in ("min", "opt", "max"))
    bad = [axis for axis in range(rank) if not low[axis] <= opt[axis] <= high[axis]]
    if bad:
        raise ManifestError(
            f"{source}: {where} is not min <= opt <= max at axis {bad} (min {low}, opt {opt}, max {high})",
            "order the shapes so that every axis grows from min through opt to max",
        )
    outside = [axis for axis in range(rank) if not low[axis] <= spec.shape[axis] <= high[axis]]
    if outside:
        raise ManifestError(
            f"{source}: {where} [min {low}, max {high}] does not contain the input's shape {spec.shape} "
            f"at axis {outside}; the runner always feeds that shape",
            f"widen the profile to include {spec.shape}, or fix the input's shape",
        )
    return ShapeProfile(min=low, opt=opt, max=high)


def _tensorrt_settings(raw: Any, inputs: Mapping[str, TensorSpec], source: str) -> TensorRTSettings:
    if not isinstance(raw, dict):
        raise ManifestError(f"{source}: tensorrt must be an object", "fix the manifest (docs/schemas.md)")
    precision = raw.get("precision")
    if precision is not None and precision not in TENSORRT_PRECISIONS:
        raise ManifestError(
            f"{source}: tensorrt.precision {precision!r} is not a TensorRT builder precision",
            f"use one of {', '.join(TENSORRT_PRECISIONS)}",
        )
    calibration = None
    raw_cache = raw.get("calibration_cache")
    if raw_cache is not None:
        if not isinstance(raw_cache, dict):
            raise ManifestError(
                f"{source}: tensorrt.calibration_cache must be an object with file and sha256",
                'write {"file": "calib.cache", "sha256": "<sha256sum of it>"}',
            )
        name, sha = raw_cache.get("file"), raw_cache.get("sha256")
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ManifestError(
                f"{source}: tensorrt.calibration_cache.file must be a file name in the policy directory, "
                f"got {name!r}",
                "put the cache beside policy.json and name it without a directory (calib.cache)",
            )
        if name in RELEASE_FILES:
            raise ManifestError(
                f"{source}: tensorrt.calibration_cache.file {name!r} is a name the release uses itself",
                f"rename the cache (not one of {', '.join(RELEASE_FILES)})",
            )
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ManifestError(
                f"{source}: tensorrt.calibration_cache.sha256 must be 64 lowercase hex digits",
                f"write the output of `sha256sum {name}`",
            )
        if precision not in ("int8", "best"):
            raise ManifestError(
                f"{source}: tensorrt.calibration_cache is set but tensorrt.precision is "
                f"{precision or 'unset'}; only INT8 builds read a calibration cache",
                "set tensorrt.precision to int8 (or best), or remove tensorrt.calibration_cache",
            )
        calibration = CalibrationCache(file=name, sha256=sha)
    raw_profiles = raw.get("profiles", {})
    if not isinstance(raw_profiles, dict):
        raise ManifestError(
            f"{source}: tensorrt.profiles must map input names to min/opt/max", "fix the manifest"
        )
    profiles: Dict[str, ShapeProfile] = {}
    for tname, raw_profile in raw_profiles.items():
        spec = inputs.get(tname)
        if spec is None:
            raise ManifestError(
                f"{source}: tensorrt.profiles names '{tname}', which is not an input",
                f"use the model's input names ({', '.join(sorted(inputs))})",
            )
        profiles[tname] = _profile(tname, raw_profile, spec, source)
    return TensorRTSettings(precision=precision, calibration_cache=calibration, profiles=profiles)
