"""Start and remove throwaway sim-robot containers (jp-prov-*) for the provision tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
CONTAINERS_CONF = REPO / "sim" / "containers.conf"
ULIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_NOCOLOR"] = "1"
    return env


def unavailable_reason(image: str) -> str | None:
    """Why the container tests cannot run here, or None when they can."""
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman runc)"
    probe = subprocess.run(
        ["podman", "image", "exists", image], env=podman_env(), capture_output=True, check=False
    )
    if probe.returncode != 0:
        return f"sim image {image} missing: run `bash sim/build-image.sh`"
    return None


def start(image: str, extra: list[str], command: list[str]) -> str:
    name = f"jp-prov-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["podman", "run", "-d", "--name", name, *ULIMITS, *extra, image, *command],
        env=podman_env(),
        check=True,
        capture_output=True,
    )
    return name


def remove(name: str) -> None:
    subprocess.run(["podman", "rm", "-f", "-t", "0", name], env=podman_env(), capture_output=True, check=False)


def sh(name: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "exec", name, "sh", "-c", script],
        env=podman_env(),
        capture_output=True,
        text=True,
        check=False,
    )


def write_inventory(path: Path, host: str, container: str) -> Path:
    """One robot in the project's groups (robots > orin_robots), reached with `podman exec`."""
    path.write_text(
        "all:\n  children:\n    robots:\n      children:\n        orin_robots:\n          hosts:\n"
        f"            {host}:\n              ansible_host: {container}\n"
        "              ansible_connection: containers.podman.podman\n"
        "              ansible_python_interpreter: /usr/bin/python3\n"
    )
    return path


def playbook(inventory: Path, play: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(play), *extra],
        cwd=REPO,
        env=podman_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
