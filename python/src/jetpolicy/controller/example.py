"""`jetpolicy example`: a small PyTorch MLP (or GRU) policy exported to ONNX with a full manifest.

It exercises every manifest path (normalisation, action limits, safe action, recurrent state) so
the runtime and the rollout can be tested without a trained policy. `--slow` makes a large model
(4 x 4096 hidden) at 1 kHz for trying the timing gate by hand; the fleet's too-slow test builds its
own (tests/fleet/test_rollout.py).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from jetpolicy import __version__
from jetpolicy.common.manifest import PolicyManifest
from jetpolicy.controller.export import onnx_export, write_release

__all__ = ["SLOW_HIDDEN", "SLOW_RATE_HZ", "build_example", "example_module", "register"]

SLOW_HIDDEN = [4096, 4096, 4096, 4096]
SLOW_RATE_HZ = 1000.0


def example_module(obs: int, hidden: Sequence[int], act: int, recurrent: bool) -> Any:
    """MLP obs -> hidden... -> act with ELU; recurrent adds a GRUCell whose state is explicit I/O."""
    import torch
    from torch import nn

    layers: List[nn.Module] = []
    width = obs
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ELU()]
        width = size
    if not recurrent:
        return nn.Sequential(*layers, nn.Linear(width, act))

    class RecurrentPolicy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(*layers)
            self.memory = nn.GRUCell(width, width)
            self.head = nn.Linear(width, act)

        def forward(self, x: torch.Tensor, h_in: torch.Tensor) -> Any:
            h_out = self.memory(self.encoder(x), h_in)
            return self.head(h_out), h_out

    return RecurrentPolicy()


def _extra(obs: int, act: int, seed: int) -> Dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "normalization": {
            "obs": {
                "mean": [round(float(v), 6) for v in rng.normal(0.0, 0.1, obs)],
                "std": [round(float(v), 6) for v in rng.uniform(0.5, 2.0, obs)],
            }
        },
        "action": {
            "actions": {"scale": [0.5] * act, "offset": [0.0] * act, "low": [-1.0] * act, "high": [1.0] * act}
        },
        "safe_action": {"actions": [0.0] * act},
    }


def build_example(
    out_dir: Path,
    obs: int = 48,
    hidden: Sequence[int] = (256, 256),
    act: int = 12,
    rate_hz: float = 100.0,
    seed: int = 0,
    recurrent: bool = False,
    name: Optional[str] = None,
) -> PolicyManifest:
    """Write `policy.onnx` + `policy.json` into out_dir; the ONNX bytes depend only on the arguments."""
    import torch

    torch.manual_seed(seed)
    module = example_module(obs, hidden, act, recurrent).eval()
    args: List[Any] = [torch.zeros(1, obs)]
    in_names, out_names = ["obs"], ["actions"]
    state = []
    if recurrent:
        args.append(torch.zeros(1, hidden[-1] if hidden else obs))
        in_names.append("h_in")
        out_names.append("h_out")
        state.append(("h_in", "h_out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".example-", dir=out_dir) as tmp:
        onnx_path = Path(tmp) / "policy.onnx"
        onnx_export(module, tuple(args), onnx_path, in_names, out_names)
        default_name = "example-gru" if recurrent else "example-mlp"
        return write_release(
            onnx_path,
            out_dir,
            name=name or default_name,
            created_by=f"jetpolicy example {__version__}",
            control_rate_hz=rate_hz,
            state=state,
            extra=_extra(obs, act, seed),
        )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("example", help="write an example MLP policy (policy.onnx + policy.json)")
    parser.add_argument("--out", type=Path, required=True, help="directory to write")
    parser.add_argument("--obs", type=int, default=48, help="observation size")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="hidden layer sizes")
    parser.add_argument("--act", type=int, default=12, help="action size")
    parser.add_argument("--rate-hz", type=float, default=None, help="control rate (default 100, --slow 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recurrent", action="store_true", help="add a GRU with h_in/h_out state I/O")
    parser.add_argument("--slow", action="store_true", help=f"hidden {SLOW_HIDDEN} at {SLOW_RATE_HZ:g} Hz")
    parser.add_argument("--name", help="policy name in the manifest")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    hidden = SLOW_HIDDEN if args.slow else args.hidden
    rate = args.rate_hz if args.rate_hz is not None else (SLOW_RATE_HZ if args.slow else 100.0)
    manifest = build_example(
        args.out, args.obs, hidden, args.act, rate, args.seed, recurrent=args.recurrent, name=args.name
    )
    print(f"wrote {args.out / 'policy.onnx'} (sha256 {manifest.sha256[:16]}, {rate:g} Hz) and policy.json")
    return 0
