"""`jetpolicy safe-action`: the one packet the safe-stop unit sends after the runner's last restart."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

from jetpolicy.cli import main
from jetpolicy.common.manifest import load_manifest
from jetpolicy.robot.transport import PolicyClient


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def release(example_release: Path, tmp_path: Path) -> Path:
    """The example release with a safe action outside its limits (the sent one is clipped)."""
    out = tmp_path / "release"
    shutil.copytree(example_release, out)
    raw = json.loads((out / "policy.json").read_text())
    raw["safe_action"] = {"actions": [0.25] * 11 + [1e6]}
    (out / "policy.json").write_text(json.dumps(raw))
    return out


def write_config(tmp_path: Path, release: Path, transport: Dict[str, Any]) -> Path:
    path = tmp_path / "runner.json"
    path.write_text(json.dumps({"release_dir": str(release), "transport": transport}))
    return path


def expected_safe_action(release: Path) -> np.ndarray:
    manifest = load_manifest(release / "policy.json")
    high = manifest.action["actions"].high
    return np.minimum(np.array(manifest.safe_action["actions"], np.float32), np.array(high or np.inf))


def test_sends_the_manifests_safe_action_once_flagged_safe(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One packet reaches action_to, flagged as the safe action, holding the manifest's values
    clipped to the limits; the log line says what was sent where and why."""
    manifest = load_manifest(release / "policy.json")
    runner, driver = f"127.0.0.1:{free_udp_port()}", f"127.0.0.1:{free_udp_port()}"
    client = PolicyClient(runner, driver, manifest.observation_inputs, manifest.action_outputs)
    try:
        config = write_config(tmp_path, release, {"kind": "udp", "bind": runner, "action_to": driver})
        assert main(["safe-action", "--config", str(config), "--reason", "restart limit reached"]) == 0
        packet = client.receive_action(timeout_s=2.0)
        assert packet is not None and packet.safe
        np.testing.assert_allclose(packet.actions["actions"].ravel(), expected_safe_action(release).ravel())
        assert client.receive_action(timeout_s=0.2) is None  # once
    finally:
        client.close()
    log = capsys.readouterr().err
    assert f"to udp {driver}" in log and "restart limit reached" in log and release.name in log


def test_sends_from_an_unbound_socket_when_the_runner_address_is_taken(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A runner still holding its port does not stop the safe action; the log says so."""
    manifest = load_manifest(release / "policy.json")
    runner, driver = f"127.0.0.1:{free_udp_port()}", f"127.0.0.1:{free_udp_port()}"
    client = PolicyClient(runner, driver, manifest.observation_inputs, manifest.action_outputs)
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", int(runner.rsplit(":", 1)[1])))
    try:
        config = write_config(tmp_path, release, {"kind": "udp", "bind": runner, "action_to": driver})
        assert main(["safe-action", "--config", str(config)]) == 0
        packet = client.receive_action(timeout_s=2.0)
        assert packet is not None and packet.safe
    finally:
        holder.close()
        client.close()
    assert "unbound socket" in capsys.readouterr().err


def test_a_transport_without_a_receiver_sends_nothing(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Synthetic input (sim robots): there is no driver; the command says so and succeeds."""
    config = write_config(tmp_path, release, {"kind": "synthetic"})
    assert main(["safe-action", "--config", str(config)]) == 0
    assert "nothing sent" in capsys.readouterr().err


def test_an_unreachable_driver_fails_with_the_address(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No driver socket: exit 2, naming the release, the address and the cause."""
    missing = tmp_path / "no-driver.sock"
    config = write_config(
        tmp_path, release, {"kind": "unix", "bind": str(tmp_path / "obs.sock"), "action_to": str(missing)}
    )
    assert main(["safe-action", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"unix {missing}" in err and "could not be sent" in err
