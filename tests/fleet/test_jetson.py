"""The Jetson branch of every role, end to end, on the L4T-shaped aarch64 sim robot (sim-jetson-1).

sim-jetson-1 is Debian bullseye arm64 under qemu-user (glibc 2.31, as JetPack 5) dressed as an
L4T R35 robot by sim/l4t/: /etc/nv_tegra_release, JetPack's dpkg entries, and replay doubles of
trtexec, nvpmodel, jetson_clocks and tegrastats answering with real recorded output. The runner
there has no TensorRT, so it runs the policy on ONNX Runtime (aarch64 wheels) and says why.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleetlib import (
    REPO,
    VENV_BIN,
    Robot,
    ansible_playbook,
    fleet_env,
    make_policy,
    podman_exec,
    recap,
    report_of,
)

pytestmark = [pytest.mark.fleet, pytest.mark.jetson]

HOST = "sim-jetson-1"
ENGINES = "/opt/jetpolicy/engines"
# Where the jetson_clocks replay double keeps "locked"/"unlocked" (sim/l4t/recorded/README.md).
SIM_CLOCKS = "/var/lib/jetpolicy-sim-l4t/jetson_clocks.state"


def release_id(policy: Path) -> str:
    return str(json.loads((policy / "policy.json").read_text())["sha256"])[:16]


def deploy(policy: Path, *extra: str) -> str:
    proc = ansible_playbook("deploy.yml", "-l", "jetson_robots", "-e", f"jetpolicy_policy_dir={policy}", *extra)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    return str(proc.stdout)


def engine_of(release: str) -> str:
    """The engine file a release's link points at ('' when there is none)."""
    return podman_exec(HOST, "readlink", "-f", f"{ENGINES}/by-release/{release}.engine")


@pytest.fixture(scope="module")
def jetson(jetson_fleet: Robot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    base = tmp_path_factory.mktemp("jetson-policies")
    # 10 Hz: the emulated robot shares two cores with the x86 tests (inventory/sim/group_vars/jetson_robots.yml).
    yield {
        "a": make_policy(base / "a", "--seed", "61", "--rate-hz", "10"),
        "b": make_policy(base / "b", "--seed", "62", "--rate-hz", "10"),
    }


def test_provision_runs_the_l4t_branch(jetson_fleet: Robot) -> None:
    """provision.yml on the L4T robot: power mode set and verified through nvpmodel, jetson_clocks
    made persistent, the service user in the GPU groups; the facts say the tools are replayed."""
    proc = ansible_playbook(
        "playbooks/provision.yml", "-l", "jetson_robots",
        "-e", "jetson_provision_apt_update_cache=false",
        "-e", "jetson_provision_nvpmodel_mode=2", "-e", "jetson_provision_jetson_clocks=true",
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    assert "NV Power Mode" in podman_exec(HOST, "nvpmodel", "-q")
    assert podman_exec(HOST, "sh", "-c", "nvpmodel -q | tail -n 1") == "2"
    assert podman_exec(HOST, "systemctl", "is-enabled", "jetpolicy-jetson-clocks.service") == "enabled"
    groups = podman_exec(HOST, "id", "-nG", "jetpolicy").split()
    assert {"video", "render"} <= set(groups), groups
    again = ansible_playbook(
        "playbooks/provision.yml", "-l", "jetson_robots",
        "-e", "jetson_provision_apt_update_cache=false",
        "-e", "jetson_provision_nvpmodel_mode=2", "-e", "jetson_provision_jetson_clocks=true",
    )
    assert again.returncode == 0, again.stdout[-3000:]
    assert recap(again.stdout)[HOST]["changed"] == 0, again.stdout[-3000:]


@pytest.fixture(scope="module")
def first_deploy(jetson: dict[str, Path]) -> str:
    return deploy(jetson["a"])


def test_aarch64_runtime_with_jetpack_site_packages(jetson: dict[str, Path], first_deploy: str) -> None:
    """The runtime venv runs the robot's own aarch64 Python 3.9, sees the system site-packages
    (where JetPack's TensorRT bindings live) and holds aarch64 wheels chosen for glibc 2.31."""
    venv = podman_exec(HOST, "readlink", "-f", "/opt/jetpolicy/runtime/current")
    probe = podman_exec(
        HOST, f"{venv}/bin/python", "-c",
        "import platform, sys, numpy, onnxruntime; "
        "print(platform.machine(), sys.version_info[:2], numpy.__version__, onnxruntime.__version__)",
    )
    assert probe.startswith("aarch64 (3, 9) 1."), probe
    assert "include-system-site-packages = true" in podman_exec(HOST, "cat", f"{venv}/pyvenv.cfg")
    wheels = podman_exec(HOST, "sh", "-c", "ls /opt/jetpolicy/runtime/wheels/*/")
    assert "onnxruntime-" in wheels and "aarch64" in wheels, wheels


def test_engine_built_on_the_robot_and_linked_to_its_release(jetson: dict[str, Path], first_deploy: str) -> None:
    """trtexec (the replay double at JetPack's path) built the engine through our module; the engine
    is linked to the release; the runner fell back to ONNX Runtime and says why."""
    release = release_id(jetson["a"])
    engine = engine_of(release)
    assert engine.startswith(f"{ENGINES}/") and engine.endswith(".engine"), engine
    assert podman_exec(HOST, "head", "-c", "23", engine) == "SIMULATED-ENGINE replay"
    status = json.loads(podman_exec(HOST, "cat", "/run/jetpolicy/status.json"))
    assert status["backend"] == "onnxruntime"
    assert "tensorrt" in status["backend_reason"], status["backend_reason"]


def test_rerun_hits_the_engine_cache(jetson: dict[str, Path], first_deploy: str) -> None:
    """The same deploy again builds nothing and changes nothing."""
    engine = engine_of(release_id(jetson["a"]))
    mtime = podman_exec(HOST, "stat", "-c", "%Y", engine)
    out = deploy(jetson["a"])
    assert recap(out)[HOST]["changed"] == 0, out[-3000:]
    assert podman_exec(HOST, "stat", "-c", "%Y", engine) == mtime


def test_unit_lets_only_the_gpu_nodes_in(first_deploy: str) -> None:
    """The L4T unit names every GPU node in its device policy (closed, each node bound in and allowed
    rw, nothing else), the nodes carry their recorded names and majors, and the service user with its
    groups reaches them past the permissions (ENXIO/ENODEV: the placeholder has no driver behind it).

    What a container cannot show: systemd inside podman lacks CAP_SYS_ADMIN, so it does not build the
    private /dev, and podman's device cgroup is read-only to it; only a Jetson enforces the list."""
    show = podman_exec(
        HOST, "systemctl", "show", "jetpolicy-runner", "-p", "DevicePolicy", "-p", "DeviceAllow", "-p", "BindPaths"
    )
    # systemctl prints one DeviceAllow= line per entry ("/dev/nvmap rw"; ProtectClock adds "char-rtc r").
    lines = [line.split("=", 1) for line in show.splitlines() if "=" in line]
    props = {key: value for key, value in lines}
    allowed = {value.split()[0]: value.split()[-1] for key, value in lines if key == "DeviceAllow"}
    assert props["DevicePolicy"] == "closed", show
    for node in ("/dev/nvmap", "/dev/nvhost-ctrl-gpu", "/dev/nvhost-as-gpu", "/dev/nvhost-ctrl"):
        assert allowed.get(node) == "rw" and f"-{node}:{node}" in props["BindPaths"], show
    assert all(name.startswith("/dev/nv") or name == "char-rtc" for name in allowed), show
    numbers = podman_exec(HOST, "stat", "-c", "%n %t:%T %G", "/dev/nvhost-as-gpu", "/dev/nvhost-ctrl-gpu", "/dev/nvhost-ctrl")
    # Recorded on an L4T R35 Jetson (sim/l4t/recorded/dev_nvhost_r35_excerpt.txt), in hex as stat prints.
    assert numbers.splitlines() == [
        "/dev/nvhost-as-gpu 1f9:0 video", "/dev/nvhost-ctrl-gpu 1f9:2 video", "/dev/nvhost-ctrl 1fb:0 video"
    ], numbers
    probe = (
        "import errno, os\n"
        "for node in ('/dev/nvmap', '/dev/nvhost-ctrl-gpu'):\n"
        "    try:\n        os.close(os.open(node, os.O_RDWR))\n        print('opened')\n"
        "    except OSError as exc:\n        print(errno.errorcode[exc.errno])\n"
    )
    opened = podman_exec(
        HOST, "setpriv", "--reuid=jetpolicy", "--regid=jetpolicy", "--groups=video,render", "python3", "-c", probe
    ).split()
    assert len(opened) == 2 and all(result in ("ENODEV", "ENXIO", "opened") for result in opened), opened


def test_new_policy_gets_its_engine_and_rollback_brings_the_old_one_back(jetson: dict[str, Path], first_deploy: str) -> None:
    """A second policy is built, linked, gated (parity included) and promoted; rollback.yml goes back
    to the first release, whose engine link is still there, and the runner runs it again."""
    first, second = release_id(jetson["a"]), release_id(jetson["b"])
    first_engine = engine_of(first)
    deploy(jetson["b"])
    robot = Robot(HOST)
    assert robot.current() == second
    assert engine_of(second) not in ("", first_engine)
    proc = ansible_playbook("rollback.yml", "-l", HOST)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert robot.current() == first
    assert engine_of(first) == first_engine
    status = robot.status()
    assert status["state"] == "running" and status["pid"] == robot.main_pid()
    assert robot.history()[-1]["action"] == "rollback"


def test_bench_gate_runs_in_the_runner_unit_at_pinned_clocks_and_restores_them(
    jetson: dict[str, Path], first_deploy: str
) -> None:
    """policy_gate_timing_source=bench: the bench runs in the runner's bench unit, and the measured
    process is the runner's kind (its user, scheduler and CPUs, no capabilities, no new privileges,
    the seccomp filter), never a root process; the clocks were stored, pinned for the measurement
    and restored (the replay double's state is the robot's unpinned one again), the store removed."""
    unlocked = "jetpolicy-sim jetson_clocks state: unlocked\n"
    podman_exec(HOST, "sh", "-c", f"mkdir -p {SIM_CLOCKS.rsplit('/', 1)[0]} && printf '{unlocked}' > {SIM_CLOCKS}")
    robot = Robot(HOST)
    target = release_id(jetson["b"]) if robot.current() != release_id(jetson["b"]) else release_id(jetson["a"])
    policy = jetson["b"] if target == release_id(jetson["b"]) else jetson["a"]
    report = report_of(deploy(policy, "-e", "policy_gate_timing_source=bench"))
    assert robot.current() == target
    (host,) = [entry for entry in report["hosts"] if entry["host"] == HOST]
    bench = host["gates"]["timing"]["bench"]
    assert bench["source"] == "bench" and bench["release"] == target, bench
    process = bench["process"]
    pid = robot.main_pid()
    runner_policy = podman_exec(HOST, "python3", "-c", f"import os; print(os.sched_getscheduler({pid}))")
    runner_cpus = podman_exec(HOST, "sh", "-c", f"grep '^Cpus_allowed_list:' /proc/{pid}/status | cut -f2")
    assert process["user"] == "jetpolicy" and process["pid"] != pid, process
    assert process["no_new_privs"] is True and process["seccomp"] == "filter", process
    assert process["cap_effective"] == "0000000000000000", process
    assert process["scheduler"] == {"0": "SCHED_OTHER", "1": "SCHED_FIFO"}[runner_policy], (process, runner_policy)
    assert process["cpus"] == runner_cpus, (process, runner_cpus)
    clocks = bench["clocks"]
    assert clocks["locked"] is True and clocks["restored"] is True and clocks["simulated"] == "replay", clocks
    assert clocks["show"]["soc_family"] == "tegra234", clocks
    assert podman_exec(HOST, "cat", SIM_CLOCKS) == unlocked.strip()
    store = "/var/lib/jetpolicy/clocks-before-measurement.conf"
    assert podman_exec(HOST, "sh", "-c", f"test -e {store} && echo left || echo gone") == "gone"


GATE_TASK = "TASK [policy_gate : Measure the policy's in-loop timing]"


def test_controller_killed_during_the_gate_then_rerun(jetson: dict[str, Path], first_deploy: str, tmp_path: Path) -> None:
    """The controller is killed (SIGKILL) while the canary's timing gate measures: the runner runs the
    new release, switched but never committed, and the clocks are still pinned with their stored
    state waiting. The same deploy re-run gates the robot again (never "unchanged"), commits it, and
    restores the clocks to what they were before the killed run, not to the pinned state it left."""
    robot = Robot(HOST)
    policy = make_policy(tmp_path / "c", "--seed", "63", "--rate-hz", "10")
    target = release_id(policy)
    unlocked = "jetpolicy-sim jetson_clocks state: unlocked"
    podman_exec(HOST, "sh", "-c", f"printf '{unlocked}\\n' > {SIM_CLOCKS}")
    # Unbuffered: the task line must reach the test when the task starts, not when the run ends.
    env = {**fleet_env(), "JETPOLICY_RUN_ID": f"killed-at-gate-{int(time.time())}", "PYTHONUNBUFFERED": "1"}
    argv = [str(VENV_BIN / "ansible-playbook"), "deploy.yml", "-l", "jetson_robots", "-e", f"jetpolicy_policy_dir={policy}"]
    killed = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)  # fmt: skip
    assert killed.stdout is not None
    seen: list[str] = []
    for line in killed.stdout:
        seen.append(line)
        if GATE_TASK in line:
            break
    else:
        pytest.fail("the deploy ended before its timing gate:\n" + "".join(seen[-60:]))
    time.sleep(4)  # inside the 10 s window, after the 2 s settle at pinned clocks
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()

    store = "/var/lib/jetpolicy/clocks-before-measurement.conf"
    status = robot.status()
    loaded = status["loaded"]
    assert isinstance(loaded, dict) and loaded["release"] == target, status
    last = robot.history()[-1]
    assert (last["action"], last["to"]) == ("switch", target), last
    assert podman_exec(HOST, "cat", SIM_CLOCKS) == "jetpolicy-sim jetson_clocks state: locked"
    assert podman_exec(HOST, "cat", store) == unlocked

    report = report_of(deploy(policy))
    (host,) = [entry for entry in report["hosts"] if entry["host"] == HOST]
    assert host["verdict"] == "promoted", host
    assert robot.current() == target
    loaded = robot.status()["loaded"]
    assert isinstance(loaded, dict) and loaded["release"] == target
    last = robot.history()[-1]
    assert (last["action"], last["to"]) == ("commit", target), last
    clocks = host["gates"]["timing"]["bench"]["clocks"]
    assert clocks["store_kept"] is True and clocks["restored"] is True, clocks
    assert podman_exec(HOST, "cat", SIM_CLOCKS) == unlocked
    assert podman_exec(HOST, "sh", "-c", f"test -e {store} && echo left || echo gone") == "gone"
    assert podman_exec(HOST, "sh", "-c", "test -e /opt/jetpolicy/rollout.lock && echo left || echo gone") == "gone"
