"""Controller-side check that an ONNX file is sound and matches its manifest, reporting every problem."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple, Union

from jetpolicy.common.errors import ManifestError, PolicyValidationError
from jetpolicy.common.manifest import (
    PolicyManifest,
    TensorSpec,
    load_manifest,
    release_id,
    sha256_file,
)

__all__ = ["ONNX_DTYPES", "model_io", "register", "validate_policy"]

# onnx.TensorProto element types we can run, by enum value (stable across onnx versions).
ONNX_DTYPES: Dict[int, str] = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 9: "bool"}

Dim = Union[int, str]


def model_io(model: Any) -> Tuple[Dict[str, Tuple[List[Dim], str]], Dict[str, Tuple[List[Dim], str]]]:
    """(inputs, outputs) as name -> (dims, dtype); symbolic or unknown dims are kept as strings."""
    initializers = {init.name for init in model.graph.initializer}

    def describe(values: Any) -> Dict[str, Tuple[List[Dim], str]]:
        found: Dict[str, Tuple[List[Dim], str]] = {}
        for value in values:
            if value.name in initializers:  # old exporters list weights as graph inputs
                continue
            tensor = value.type.tensor_type
            dims: List[Dim] = []
            for dim in tensor.shape.dim:
                if dim.HasField("dim_value") and dim.dim_value > 0:
                    dims.append(int(dim.dim_value))
                else:
                    dims.append(dim.dim_param or "?")
            found[value.name] = (dims, ONNX_DTYPES.get(tensor.elem_type, f"onnx-type-{tensor.elem_type}"))
        return found

    return describe(model.graph.input), describe(model.graph.output)


def _compare(
    kind: str,
    model: Dict[str, Tuple[List[Dim], str]],
    declared: List[TensorSpec],
    may_be_dynamic: Callable[[str], bool] = lambda name: False,
) -> List[str]:
    """Names, ranks, fixed dims and dtypes; dynamic dims only where `may_be_dynamic` (an input with
    a TensorRT profile, or an output of a model that has one: its batch follows the inputs')."""
    problems: List[str] = []
    want = {s.name: s for s in declared}
    for name in want:
        if name not in model:
            problems.append(
                f"{kind} '{name}' is in the manifest but not in the model (model has {sorted(model)})"
            )
    for name in model:
        if name not in want:
            problems.append(f"{kind} '{name}' is in the model but not in the manifest")
    for name in [n for n in want if n in model]:
        dims, dtype = model[name]
        spec = want[name]
        dynamic = [axis for axis, d in enumerate(dims) if not isinstance(d, int)]
        if dynamic and not may_be_dynamic(name):
            problems.append(
                f"{kind} '{name}' has dynamic dims at axis {dynamic} ({dims}); "
                "export with static shapes (batch 1)"
            )
        if len(dims) != len(spec.shape):
            problems.append(
                f"{kind} '{name}' has rank {len(dims)} in the model, {len(spec.shape)} in the manifest"
            )
        else:
            for axis, (got, expected) in enumerate(zip(dims, spec.shape)):
                if isinstance(got, int) and got != expected:
                    problems.append(f"{kind} '{name}' axis {axis}: model {got} vs manifest {expected}")
        if dtype != spec.dtype:
            problems.append(f"{kind} '{name}' dtype: model {dtype} vs manifest {spec.dtype}")
    return problems


def _tensorrt_problems(
    manifest: PolicyManifest, policy_dir: Path, inputs: Dict[str, Tuple[List[Dim], str]]
) -> List[Tuple[str, str]]:
    """(cause, fix) for each way the tensorrt section does not fit the files and the model: the
    calibration cache present with its sha256, each profile on a real input, fixed axes unvaried."""
    settings = manifest.tensorrt
    if settings is None:
        return []
    found: List[Tuple[str, str]] = []
    cache = settings.calibration_cache
    if cache is not None:
        path = policy_dir / cache.file
        if not path.is_file():
            found.append(
                (
                    f"tensorrt.calibration_cache: {cache.file} is not in {policy_dir}",
                    f"put the calibration cache beside policy.json as {cache.file}, "
                    "or remove tensorrt.calibration_cache",
                )
            )
        else:
            actual = sha256_file(path)
            if actual != cache.sha256:
                found.append(
                    (
                        f"tensorrt.calibration_cache: {cache.file} has sha256 {actual}, "
                        f"the manifest says {cache.sha256}",
                        f"write {actual} into tensorrt.calibration_cache.sha256 if this cache is the "
                        "one to ship, or put back the cache the manifest names",
                    )
                )
    for tname, profile in settings.profiles.items():
        if tname not in inputs:
            found.append(
                (
                    f"tensorrt.profiles['{tname}'] names no input of the model (model has {sorted(inputs)})",
                    "name the profile after a model input",
                )
            )
            continue
        dims = inputs[tname][0]
        if len(dims) != len(profile.min):
            found.append(
                (
                    f"tensorrt.profiles['{tname}'] has rank {len(profile.min)}, the model input {len(dims)}",
                    "give one dim per axis of the model input",
                )
            )
            continue
        for axis, dim in enumerate(dims):
            ranged = (profile.min[axis], profile.opt[axis], profile.max[axis])
            if isinstance(dim, int) and ranged != (dim, dim, dim):
                found.append(
                    (
                        f"tensorrt.profiles['{tname}'] axis {axis}: min/opt/max {list(ranged)} but the "
                        f"model fixes that axis at {dim}",
                        f"set min, opt and max of axis {axis} to {dim}, or export the model with that "
                        "axis dynamic (dynamic_axes) to vary it",
                    )
                )
    return found


def validate_policy(model_path: Union[str, Path], manifest_path: Union[str, Path]) -> PolicyManifest:
    """Check the pair and return the manifest, or raise PolicyValidationError listing every problem."""
    import onnx

    model_path, manifest_path = Path(model_path), Path(manifest_path)
    fix = "re-export the model and manifest together with `jetpolicy export` (or `jetpolicy example`)"
    try:
        manifest = load_manifest(manifest_path)
    except ManifestError as exc:
        raise PolicyValidationError([exc.cause], exc.fix) from exc
    problems: List[str] = []
    if not model_path.is_file():
        raise PolicyValidationError([f"model {model_path} does not exist"], "pass the path to policy.onnx")
    actual = sha256_file(model_path)
    if actual != manifest.sha256:
        problems.append(f"sha256 mismatch: {model_path.name} is {actual}, manifest says {manifest.sha256}")
    try:
        model = onnx.load(str(model_path))
    except Exception as exc:  # protobuf DecodeError and friends: the file is not an ONNX model
        problems.append(f"{model_path} is not a readable ONNX model ({type(exc).__name__}: {exc})")
        raise PolicyValidationError(problems, "the file is corrupt or not ONNX: " + fix) from exc
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        problems.append(f"onnx checker rejects {model_path}: {str(exc).splitlines()[0] if str(exc) else exc}")
    inputs, outputs = model_io(model)
    profiles = manifest.tensorrt.profiles if manifest.tensorrt is not None else {}
    problems += _compare("input", inputs, manifest.inputs, lambda name: name in profiles)
    problems += _compare("output", outputs, manifest.outputs, lambda name: bool(profiles))
    tensorrt = _tensorrt_problems(manifest, manifest_path.parent, inputs)
    if problems or tensorrt:
        fixes = ([fix] if problems else []) + [f for _, f in tensorrt]
        raise PolicyValidationError(problems + [cause for cause, _ in tensorrt], "; ".join(fixes))
    return manifest


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("validate", help="check an ONNX model against its manifest")
    parser.add_argument("--model", type=Path, required=True, help="policy.onnx")
    parser.add_argument("--manifest", type=Path, required=True, help="policy.json")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        manifest = validate_policy(args.model, args.manifest)
    except PolicyValidationError as exc:
        if not args.json:
            raise
        print(json.dumps({"valid": False, "problems": exc.problems, "fix": exc.fix}))
        return 2
    if args.json:
        # release_id and calibration_cache are what policy_artifact stages (roles/policy_artifact).
        cache = manifest.tensorrt.calibration_cache if manifest.tensorrt is not None else None
        result = {
            "valid": True,
            "problems": [],
            "name": manifest.name,
            "sha256": manifest.sha256,
            "release_id": release_id(manifest),
            "calibration_cache": {"file": cache.file, "sha256": cache.sha256} if cache else None,
        }
        print(json.dumps(result))
    else:
        print(f"{args.model}: valid ({manifest.name}, sha256 {manifest.sha256[:16]})")
    return 0
