"""`jetpolicy export`: recurrent TorchScript with state in buffers, parity gate, module factories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from jetpolicy.cli import main
from jetpolicy.common.manifest import load_manifest
from jetpolicy.controller.export import ExportParityError, detect_state_buffers, export_policy, load_source
from jetpolicy.robot.policy import load_policy

# torch marks TorchScript deprecated; recurrent robot policies are still shipped as TorchScript.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


class LstmPolicy(torch.nn.Module):
    """legged_gym / rsl_rl style: the LSTM state lives in buffers updated inside forward."""

    def __init__(self) -> None:
        super().__init__()
        self.memory = torch.nn.LSTM(10, 16, 1)
        self.actor = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ELU(), torch.nn.Linear(32, 4))
        self.register_buffer("hidden_state", torch.zeros(1, 1, 16))
        self.register_buffer("cell_state", torch.zeros(1, 1, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, (h, c) = self.memory(x.unsqueeze(0), (self.hidden_state, self.cell_state))
        self.hidden_state[:] = h
        self.cell_state[:] = c
        return self.actor(out.squeeze(0))


def make_mlp() -> torch.nn.Module:
    """Factory used through --module-factory test_export:make_mlp."""
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


@pytest.fixture(scope="module")
def lstm_torchscript(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ts") / "policy_lstm.pt"
    torch.jit.script(LstmPolicy()).save(str(path))
    return path


@pytest.fixture(scope="module")
def lstm_release(lstm_torchscript: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lstm_release")
    module = load_source(lstm_torchscript, torchscript=True, module_factory=None)
    export_policy(
        module, out, inputs=[("obs", [1, 10])], output_names=["actions"], control_rate_hz=50, name="lstm"
    )
    return out


def _observations(count: int) -> Any:
    rng = np.random.default_rng(42)
    return [rng.standard_normal((1, 10)).astype(np.float32) for _ in range(count)]


def test_state_buffers_detected(lstm_torchscript: Path) -> None:
    """The buffers forward() mutates are found, and the module is left untouched."""
    module = torch.jit.load(str(lstm_torchscript))
    assert sorted(detect_state_buffers(module, [torch.randn(1, 10)])) == ["cell_state", "hidden_state"]
    assert float(module.hidden_state.abs().sum()) == 0.0


def test_recurrent_torchscript_exports_state_as_io(lstm_release: Path, lstm_torchscript: Path) -> None:
    """The ONNX takes/returns the buffers as state I/O and matches TorchScript over 50 steps."""
    manifest = load_manifest(lstm_release / "policy.json")
    assert [(p.input, p.output) for p in manifest.state] == [
        ("hidden_state_in", "hidden_state_out"),
        ("cell_state_in", "cell_state_out"),
    ]
    assert manifest.created_by.startswith("jetpolicy export ")
    session = ort.InferenceSession(str(lstm_release / "policy.onnx"), providers=["CPUExecutionProvider"])
    reference = torch.jit.load(str(lstm_torchscript))
    h = np.zeros((1, 1, 16), np.float32)
    c = np.zeros((1, 1, 16), np.float32)
    worst = 0.0
    for obs in _observations(50):
        with torch.no_grad():
            expected = reference(torch.from_numpy(obs)).numpy()
        actions, h, c = session.run(None, {"obs": obs, "hidden_state_in": h, "cell_state_in": c})
        worst = max(worst, float(np.abs(actions - expected).max()))
    assert worst <= 1e-5
    np.testing.assert_allclose(h, reference.hidden_state.numpy(), atol=1e-5)


def test_runtime_policy_matches_torchscript_200_ticks(lstm_release: Path, lstm_torchscript: Path) -> None:
    """Policy.step (runtime, state carried by jetpolicy) equals the TorchScript model for 200 ticks."""
    policy = load_policy(lstm_release, backend="onnxruntime")
    reference = torch.jit.load(str(lstm_torchscript))
    worst = 0.0
    for obs in _observations(200):
        with torch.no_grad():
            expected = reference(torch.from_numpy(obs)).numpy()
        actions = policy.step({"obs": obs})["actions"]
        worst = max(worst, float(np.abs(actions - expected).max()))
    assert worst <= 1e-5


def test_parity_failure_writes_nothing(lstm_torchscript: Path, tmp_path: Path) -> None:
    """When parity is not met nothing is written and the error carries the max error."""
    module = load_source(lstm_torchscript, torchscript=True, module_factory=None)
    with pytest.raises(ExportParityError) as info:
        export_policy(
            module,
            tmp_path,
            inputs=[("obs", [1, 10])],
            output_names=["actions"],
            control_rate_hz=50,
            name="x",
            atol=-1.0,
        )
    # The measured error (tiny: the export itself is fine), not the tolerance or a sentinel, and
    # the message gives it with the tolerance it missed.
    error = info.value.max_abs_error
    assert 0.0 <= error < 1e-4
    assert f"differs from the source model by {error:.3g} (atol -1)" in info.value.cause
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_cli_module_factory(tmp_path: Path) -> None:
    """--module-factory + --checkpoint exports a stateless model whose ONNX matches eager PyTorch."""
    torch.manual_seed(3)
    model = make_mlp()
    checkpoint = tmp_path / "ckpt.pt"
    torch.save({"model_state_dict": model.state_dict()}, str(checkpoint))
    out = tmp_path / "release"
    code = main(
        [
            "export",
            "--checkpoint",
            str(checkpoint),
            "--module-factory",
            "test_export:make_mlp",
            "--out",
            str(out),
            "--input",
            "obs:1x6",
            "--output",
            "mu",
            "--rate-hz",
            "200",
        ]
    )
    assert code == 0
    manifest = load_manifest(out / "policy.json")
    assert manifest.state == [] and manifest.output("mu").shape == [1, 2]
    obs = np.ones((1, 6), np.float32)
    got = ort.InferenceSession(str(out / "policy.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"obs": obs}
    )[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.from_numpy(obs)).numpy(), atol=1e-6)


def test_cli_bad_input_arg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed --input is a one-line error with the expected syntax."""
    checkpoint = tmp_path / "m.pt"
    torch.jit.script(make_mlp()).save(str(checkpoint))
    code = main(
        [
            "export",
            "--checkpoint",
            str(checkpoint),
            "--torchscript",
            "--out",
            str(tmp_path / "o"),
            "--input",
            "obs",
            "--rate-hz",
            "50",
        ]
    )
    assert code == 2
    assert "fix: write NAME:DIMS" in capsys.readouterr().err
