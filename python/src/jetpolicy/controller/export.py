"""`jetpolicy export`: a PyTorch policy to ONNX + manifest, written only after a parity check.

Sources are a TorchScript file or an nn.Module built by a factory plus a state_dict. Recurrent
policies that keep their hidden state in module buffers (updated inside forward, as legged_gym /
rsl_rl export LSTM policies) are exported with that state as explicit ONNX inputs and outputs,
because the runtime carries state between ticks itself and ONNX has no mutable buffers.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from jetpolicy import __version__
from jetpolicy.common.errors import JetpolicyError
from jetpolicy.common.manifest import PolicyManifest, TensorSpec, manifest_from_dict, sha256_file

__all__ = [
    "ExportError",
    "ExportParityError",
    "StateBuffer",
    "detect_state_buffers",
    "export_policy",
    "onnx_export",
    "parse_tensor_arg",
    "register",
    "state_as_io",
    "write_release",
]

OPSET = 17


class ExportError(JetpolicyError):
    """The source model or the export arguments are unusable."""


class ExportParityError(JetpolicyError):
    """The exported ONNX does not reproduce the source model."""

    def __init__(self, max_abs_error: float, atol: float, steps: int) -> None:
        self.max_abs_error = max_abs_error
        super().__init__(
            f"exported ONNX differs from the source model by {max_abs_error:.3g} "
            f"(atol {atol:g}) over {steps} steps",
            "check for unsupported ops or state the wrapper missed (--state), or raise --atol if intended",
        )


@dataclass(frozen=True)
class StateBuffer:
    """A module buffer that holds recurrent state, and the ONNX names that carry it."""

    buffer: str
    input: str
    output: str


def parse_tensor_arg(text: str) -> Tuple[str, List[int]]:
    """`obs:1x48` -> ("obs", [1, 48])."""
    name, sep, dims = text.partition(":")
    try:
        shape = [int(d) for d in dims.lower().split("x")] if sep else []
    except ValueError:
        shape = []
    if not name or not shape or any(d <= 0 for d in shape):
        raise ExportError(f"bad tensor argument {text!r}", "write NAME:DIMS with static dims, e.g. obs:1x48")
    return name, shape


def onnx_export(
    module: Any, args: Tuple[Any, ...], path: Path, input_names: List[str], output_names: List[str]
) -> None:
    """torch.onnx.export with the TorchScript-based exporter, opset 17, static shapes.

    The dynamo exporter (default since torch 2.9) needs onnxscript and cannot take ScriptModules;
    the TorchScript exporter handles both and gives static shapes when no dynamic_axes are given.
    """
    import torch

    kwargs: Dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=output_names,
            opset_version=OPSET,
            do_constant_folding=True,
            **kwargs,
        )


def tensor_specs_from_onnx(path: Path) -> Tuple[List[TensorSpec], List[TensorSpec]]:
    """Read names/shapes/dtypes back from the exported file, the single source of truth."""
    from jetpolicy.robot.backends.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(path)
    try:
        return backend.inputs, backend.outputs
    finally:
        backend.close()


def write_release(
    onnx_path: Path,
    out_dir: Path,
    name: str,
    created_by: str,
    control_rate_hz: float,
    state: Sequence[Tuple[str, str]] = (),
    extra: Optional[Dict[str, Any]] = None,
) -> PolicyManifest:
    """Move a finished ONNX into `out_dir/policy.onnx` and write a checked `policy.json` beside it."""
    inputs, outputs = tensor_specs_from_onnx(onnx_path)
    state_in = {i for i, _ in state}
    state_out = {o for _, o in state}
    raw: Dict[str, Any] = {
        "format": 1,
        "name": name,
        "sha256": sha256_file(onnx_path),
        "created_by": created_by,
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "control_rate_hz": control_rate_hz,
        "inputs": [
            {
                "name": s.name,
                "shape": s.shape,
                "dtype": s.dtype,
                "role": "state" if s.name in state_in else "observation",
            }
            for s in inputs
        ],
        "outputs": [
            {
                "name": s.name,
                "shape": s.shape,
                "dtype": s.dtype,
                "role": "state" if s.name in state_out else "action",
            }
            for s in outputs
        ],
        "state": [{"input": i, "output": o} for i, o in state],
    }
    raw.update(extra or {})
    manifest = manifest_from_dict(raw, source=f"manifest for {name}")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "policy.onnx"
    if onnx_path.resolve() != target.resolve():
        shutil.move(str(onnx_path), str(target))
    # Write the manifest atomically: a reader never sees a half-written file.
    tmp = out_dir / ".policy.json.tmp"
    manifest.save(tmp)
    os.replace(tmp, out_dir / "policy.json")
    return manifest


def detect_state_buffers(module: Any, inputs: Sequence[Any]) -> List[str]:
    """Buffers that forward() changes: the recurrent state. The module is restored afterwards."""
    import torch

    before = {n: b.detach().clone() for n, b in module.named_buffers()}
    with torch.no_grad():
        module(*inputs)
        changed = [n for n, b in module.named_buffers() if not torch.equal(b, before[n])]
        for n, b in module.named_buffers():
            b.copy_(before[n])
    return changed


_WRAPPER_TEMPLATE = '''\
"""Generated by jetpolicy export: recurrent buffers as explicit inputs and outputs."""
from typing import Tuple

import torch


class StateAsIO(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, {params}) -> Tuple[{ret_types}]:
{loads}
        {outs} = self.inner({obs_args})
        return {returns}
'''


def state_as_io(module: Any, observation_count: int, output_count: int, buffers: Sequence[str]) -> Any:
    """A scripted wrapper: copy each state input into its buffer, run forward, return the new state.

    Scripting (not tracing) is required: the tracer records the buffer copy but not the mutation
    inside a ScriptModule's forward, so a traced wrapper would return the *old* state. The
    TorchScript exporter turns the scripted buffer writes into SSA values. Buffer names are only
    known at run time and TorchScript needs source, so the wrapper is generated into a temp file.
    """
    import torch

    obs = [f"x{i}" for i in range(observation_count)]
    states = [f"s{i}" for i in range(len(buffers))]
    outs = [f"y{i}" for i in range(output_count)]
    source = _WRAPPER_TEMPLATE.format(
        params=", ".join(f"{p}: torch.Tensor" for p in obs + states),
        ret_types=", ".join(["torch.Tensor"] * (output_count + len(buffers))),
        loads="\n".join(f"        self.inner.{b}.copy_({s})" for b, s in zip(buffers, states)),
        outs=", ".join(outs),
        obs_args=", ".join(obs),
        returns=", ".join(outs + [f"self.inner.{b}.clone()" for b in buffers]),
    )
    with tempfile.TemporaryDirectory(prefix="jetpolicy-wrap-") as tmp, warnings.catch_warnings():
        path = Path(tmp) / "jetpolicy_state_wrapper.py"
        path.write_text(source, encoding="utf-8")
        mod_name = f"_jetpolicy_state_wrapper_{id(module)}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        assert spec is not None and spec.loader is not None
        generated = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = generated
        try:
            warnings.simplefilter("ignore", DeprecationWarning)
            spec.loader.exec_module(generated)
            scripted_inner = (
                module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module)
            )
            return torch.jit.script(generated.StateAsIO(scripted_inner))
        except Exception as exc:
            raise ExportError(
                f"cannot script the recurrent wrapper for buffers {list(buffers)}: {exc}",
                "make the model scriptable (torch.jit.script) and update state buffers in place "
                "(copy_ or [:] =)",
            ) from exc
        finally:
            del sys.modules[mod_name]


def _as_list(result: Any) -> List[Any]:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def check_export_parity(
    module: Any,
    onnx_path: Path,
    observations: Sequence[Tuple[str, List[int]]],
    output_names: Sequence[str],
    state: Sequence[StateBuffer],
    steps: int = 50,
    seed: int = 0,
) -> float:
    """Max abs error between the source model and the ONNX over `steps` ticks, state carried.

    Both sides start from zero state, the runtime's start-up state.
    """
    import onnxruntime as ort
    import torch

    buffers = dict(module.named_buffers())
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    carried = {s.input: np.zeros(tuple(buffers[s.buffer].shape), dtype=np.float32) for s in state}
    rng = np.random.default_rng(seed)
    worst = 0.0
    with torch.no_grad():
        for s in state:
            buffers[s.buffer].zero_()
        try:
            for _ in range(steps):
                obs = {n: rng.standard_normal(shape).astype(np.float32) for n, shape in observations}
                ref = [t.numpy() for t in _as_list(module(*[torch.from_numpy(v) for v in obs.values()]))]
                ref += [buffers[s.buffer].numpy().copy() for s in state]
                got = session.run(list(output_names) + [s.output for s in state], {**obs, **carried})
                for r, g in zip(ref, got):
                    worst = max(worst, float(np.max(np.abs(r.astype(np.float64) - g.astype(np.float64)))))
                for s, value in zip(state, got[len(output_names) :]):
                    carried[s.input] = value
        finally:
            for s in state:
                buffers[s.buffer].zero_()
    return worst


def export_policy(
    module: Any,
    out_dir: Path,
    inputs: Sequence[Tuple[str, List[int]]],
    output_names: Sequence[str],
    control_rate_hz: float,
    name: str,
    state_buffers: Optional[Sequence[str]] = None,
    steps: int = 50,
    atol: float = 1e-5,
    extra: Optional[Dict[str, Any]] = None,
) -> PolicyManifest:
    """Export `module` (eager or TorchScript) and write the release only if parity holds.

    `state_buffers=None` detects recurrent buffers by running forward once on random inputs.
    """
    import torch

    module.eval()
    example = [torch.zeros(shape) for _, shape in inputs]
    if state_buffers is None:
        probe = [torch.randn(shape) for _, shape in inputs]
        state_buffers = detect_state_buffers(module, probe)
    buffers = dict(module.named_buffers())
    missing = [b for b in state_buffers if b not in buffers]
    if missing:
        raise ExportError(
            f"state buffers {missing} are not buffers of the model", f"use some of {sorted(buffers)}"
        )
    state = [StateBuffer(b, f"{b.replace('.', '_')}_in", f"{b.replace('.', '_')}_out") for b in state_buffers]
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out_dir) as tmp:
        onnx_path = Path(tmp) / "policy.onnx"
        in_names = [n for n, _ in inputs] + [s.input for s in state]
        out_names = list(output_names) + [s.output for s in state]
        try:
            if state:
                wrapper = state_as_io(module, len(inputs), len(output_names), [s.buffer for s in state])
                args = tuple(example + [torch.zeros(buffers[s.buffer].shape) for s in state])
                onnx_export(wrapper, args, onnx_path, in_names, out_names)
            else:
                onnx_export(module, tuple(example), onnx_path, in_names, out_names)
        except JetpolicyError:
            raise
        except Exception as exc:
            raise ExportError(
                f"torch.onnx.export failed: {exc}", "check the input shapes and the model's ops"
            ) from exc
        error = check_export_parity(module, onnx_path, inputs, output_names, state, steps=steps)
        if not error <= atol:  # also refuses NaN
            raise ExportParityError(error, atol, steps)
        return write_release(
            onnx_path,
            out_dir,
            name=name,
            created_by=f"jetpolicy export {__version__}",
            control_rate_hz=control_rate_hz,
            state=[(s.input, s.output) for s in state],
            extra=extra,
        )


def load_source(checkpoint: Path, torchscript: bool, module_factory: Optional[str]) -> Any:
    """Load the model: a TorchScript file, or factory() + load_state_dict(checkpoint)."""
    import torch

    if not checkpoint.is_file():
        raise ExportError(f"checkpoint {checkpoint} does not exist", "pass the path to the saved model")
    if torchscript:
        try:
            with warnings.catch_warnings():
                # torch marks TorchScript deprecated, but it is how recurrent policies ship today.
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(str(checkpoint), map_location="cpu")  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise ExportError(
                f"{checkpoint} is not a TorchScript file: {exc}",
                "save it with torch.jit.save, or use --module-factory",
            ) from exc
    if not module_factory or ":" not in module_factory:
        raise ExportError(
            "--module-factory must be package.module:function", "e.g. mypolicies.nets:make_actor"
        )
    mod_name, _, fn_name = module_factory.partition(":")
    try:
        factory = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise ExportError(f"cannot import {module_factory}: {exc}", "check PYTHONPATH and the name") from exc
    module = factory()
    state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise ExportError(
            f"{checkpoint} does not fit the module from {module_factory}: {exc}",
            "pass the factory that built this checkpoint",
        ) from exc
    return module


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("export", help="PyTorch policy -> ONNX + manifest (parity-checked)")
    parser.add_argument("--checkpoint", type=Path, required=True, help="TorchScript file or state_dict")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--torchscript", action="store_true", help="the checkpoint is a TorchScript file")
    source.add_argument("--module-factory", metavar="MOD:FN", help="function that builds the nn.Module")
    parser.add_argument("--out", type=Path, required=True, help="release directory to write")
    parser.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="NAME:DIMS",
        help="observation input, e.g. obs:1x48",
    )
    parser.add_argument(
        "--output", action="append", metavar="NAME", help="action output name (default: actions)"
    )
    parser.add_argument(
        "--state", action="append", metavar="BUFFER", help="recurrent state buffer (default: detected)"
    )
    parser.add_argument("--rate-hz", type=float, required=True, help="control rate the policy was trained at")
    parser.add_argument("--name", help="policy name (default: checkpoint file stem)")
    parser.add_argument("--extra", type=Path, help="JSON with normalization / action / safe_action sections")
    parser.add_argument("--steps", type=int, default=50, help="parity steps (state carried)")
    parser.add_argument("--atol", type=float, default=1e-5, help="parity tolerance")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    extra = None
    if args.extra is not None:
        try:
            extra = json.loads(args.extra.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ExportError(f"cannot read --extra {args.extra}: {exc}", "pass a JSON object file") from exc
    module = load_source(args.checkpoint, args.torchscript, args.module_factory)
    manifest = export_policy(
        module,
        args.out,
        inputs=[parse_tensor_arg(t) for t in args.input],
        output_names=args.output or ["actions"],
        control_rate_hz=args.rate_hz,
        name=args.name or args.checkpoint.stem,
        state_buffers=args.state,
        steps=args.steps,
        atol=args.atol,
        extra=extra,
    )
    print(f"wrote {args.out / 'policy.onnx'} (sha256 {manifest.sha256[:16]}) and policy.json")
    return 0
