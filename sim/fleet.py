#!/usr/bin/env python3
"""Start, stop and list the simulated robot fleet: podman containers running systemd and sshd.

Each robot gets its own SSH host keys (generated inside it at first start, never shared through
the image), the fleet's SSH key in `robot`'s authorized_keys, and its host key recorded in
`.sim/known_hosts` straight from the container (not trusted-on-first-use over the network), so
Ansible connects with strict host-key checking. The inventory is written to
`inventory/sim/hosts.yml`.

    python3 sim/fleet.py up [--orin 2] [--xavier 1] [--jetson 1]
    python3 sim/fleet.py down
    python3 sim/fleet.py status
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE_DIR = REPO / ".sim"
INVENTORY = REPO / "inventory" / "sim" / "hosts.yml"
LABEL = "jetpolicy.sim=fleet"
# orin_robots stand in for JetPack 6 (newer Debian), xavier_robots for JetPack 5 (older Debian),
# both x86_64. jetson_robots are aarch64 (bullseye arm64 under qemu-user: glibc 2.31 as on
# JetPack 5) and dressed as an L4T R35 robot whose NVIDIA tools are replay doubles (sim/l4t/).
PLATFORMS: dict[str, str] = {"orin": "bookworm", "xavier": "bullseye", "jetson": "bullseye-arm64"}
L4T_DRESSED = {"jetson"}
L4T_DIR = REPO / "sim" / "l4t"
# The placeholder GPU nodes dress.sh creates (systemd-tmpfiles 'c' lines). The container's device
# cgroup must let them open, so that an open reaches the kernel and fails as on a robot whose driver
# is missing (ENXIO/ENODEV) instead of at the cgroup (EPERM).
L4T_DEVICE_NODES = L4T_DIR / "jetpolicy-sim-l4t-devices.conf"
# Emulated robots boot and start services 10-25x slower than native ones.
BOOT_TIMEOUT_S = {"jetson": 300.0}
# Hosts here cannot raise rlimits above their hard limits, and crun fails on their cgroups.
PODMAN_RUN_FLAGS = [
    "--systemd=always",
    "--ulimit", "nofile=4096:4096",
    "--ulimit", "nproc=4096:4096",
]


def run_podman(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(REPO / "sim" / "containers.conf"))
    return subprocess.run(["podman", *args], input=stdin, capture_output=True, env=env)


def podman(*args: str, check: bool = True, stdin: bytes | None = None) -> str:
    proc = run_podman(*args, stdin=stdin)
    if check and proc.returncode != 0:
        raise SystemExit(f"sim fleet: podman {' '.join(args[:3])} failed: {proc.stderr.decode().strip()}")
    return proc.stdout.decode()


def l4t_device_cgroup_rules(tmpfiles: Path = L4T_DEVICE_NODES) -> list[str]:
    """podman --device-cgroup-rule flags for the 'c PATH MODE USER GROUP - MAJOR:MINOR' lines."""
    flags: list[str] = []
    for line in tmpfiles.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) == 7 and fields[0] == "c" and ":" in fields[6]:
            flags += ["--device-cgroup-rule", f"c {fields[6]} rwm"]
    return flags


def robot_names(orin: int, xavier: int, jetson: int = 0) -> list[tuple[str, str]]:
    counts = {"orin": orin, "xavier": xavier, "jetson": jetson}
    return [
        (f"sim-{platform}-{i}", platform) for platform in PLATFORMS for i in range(1, counts[platform] + 1)
    ]


def fleet_key() -> Path:
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    key = STATE_DIR / "id_ed25519"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jetpolicy-sim-fleet", "-f", str(key)],
            check=True,
        )
    return key


def running_containers() -> list[dict[str, str]]:
    out = podman("ps", "-a", "--filter", f"label={LABEL}", "--format", "json")
    rows = json.loads(out or "[]")
    return [{"name": r["Names"][0], "state": r["State"]} for r in rows]


def is_alive(name: str) -> bool:
    """Whether the container's processes really run.

    Podman keeps its state on disk: after the machine is restored from a snapshot or rebooted,
    a container can be listed as running while its processes are gone ("cannot exec in a
    stopped container"). Only an exec tells the two apart.
    """
    return run_podman("exec", name, "true").returncode == 0


def remove_container(name: str) -> None:
    # With a dead container still on record as running, the first `rm` fails ("container state
    # improper: stopped") but brings podman's record in line with the runtime; the second succeeds.
    if run_podman("rm", "-f", "-t", "0", name).returncode != 0:
        podman("rm", "-f", "-t", "0", name)


def wait_for_systemd(name: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        state = podman("exec", name, "systemctl", "is-system-running", check=False).strip()
        if state in ("running", "degraded"):
            return
        time.sleep(0.5)
    logs = podman("logs", "--tail", "20", name, check=False).strip()
    raise SystemExit(
        f"sim fleet: {name} did not finish booting within {timeout_s:.0f} s (systemd state {state!r}).\n"
        f"Last lines of its console:\n{logs or '(none)'}\n"
        "Fix: `python3 sim/fleet.py down` and `up` again; if it repeats, rebuild the image with"
        " `podman rmi localhost/jetpolicy-sim:<suite>` and `bash sim/build-image.sh`."
    )


def start_robot(name: str, platform: str, public_key: str) -> str:
    existing = {c["name"]: c["state"] for c in running_containers()}
    if name in existing and (existing[name] != "running" or not is_alive(name)):
        print(f"{name}: replacing a container that is not running ({existing[name]} on record)")
        remove_container(name)
        existing.pop(name)
    if name not in existing:
        image = f"localhost/jetpolicy-sim:{PLATFORMS[platform]}"
        arch = ["--arch", "arm64"] if PLATFORMS[platform].endswith("-arm64") else []
        devices = l4t_device_cgroup_rules() if platform in L4T_DRESSED else []
        podman("run", "-d", "--name", name, "--hostname", name, "--label", LABEL,
               "--label", f"jetpolicy.platform={platform}", *arch, *PODMAN_RUN_FLAGS, *devices,
               image, "/sbin/init")
    wait_for_systemd(name, BOOT_TIMEOUT_S.get(platform, 90.0))
    if platform in L4T_DRESSED:
        dress_as_l4t(name)
    # Containers from one image would share host keys; make this robot's own, once.
    # Idempotent on a running robot: another test run may be using it over SSH right now, so sshd
    # is restarted only for new host keys and authorized_keys is replaced atomically when it differs.
    podman("exec", name, "sh", "-c",
           "if test -e /etc/ssh/.jetpolicy-own-hostkeys; then systemctl is-active -q ssh ||"
           " { systemctl reset-failed ssh; systemctl restart ssh; };"
           " else rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null"
           " && touch /etc/ssh/.jetpolicy-own-hostkeys"
           " && systemctl reset-failed ssh && systemctl restart ssh; fi")
    podman("exec", "-i", name, "sh", "-c",
           "keys=/home/robot/.ssh/authorized_keys; cat > $keys.new"
           " && { cmp -s $keys.new $keys && rm $keys.new"
           " || { chown robot:robot $keys.new && chmod 0600 $keys.new && mv $keys.new $keys; }; }",
           stdin=public_key.encode())
    address = podman("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name).strip()
    if not address:
        raise SystemExit(f"sim fleet: {name} has no address on podman's bridge network")
    return address


def dress_as_l4t(name: str) -> None:
    """Install the L4T look (nv_tegra_release, dpkg entries, replay doubles of NVIDIA's tools), once."""
    if run_podman("exec", name, "test", "-e", "/etc/jetpolicy-sim-l4t").returncode == 0:
        return
    podman("exec", name, "rm", "-rf", "/opt/jetpolicy-sim-l4t")
    podman("cp", str(L4T_DIR), f"{name}:/opt/jetpolicy-sim-l4t")
    podman("exec", name, "bash", "/opt/jetpolicy-sim-l4t/dress.sh", "/opt/jetpolicy-sim-l4t")


def host_key(name: str) -> str:
    return podman("exec", name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split(" #")[0].strip()


def write_inventory(robots: Sequence[tuple[str, str, str]], key: Path, known_hosts: Path) -> None:
    lines = [
        "# Generated by `python3 sim/fleet.py up`: the simulated fleet. Do not edit; rerun instead.",
        "all:",
        "  children:",
        "    robots:",
        "      vars:",
        "        ansible_user: robot",
        f"        ansible_ssh_private_key_file: {key}",
        "        ansible_ssh_common_args: >-",
        f"          -o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes",
        "      children:",
    ]
    for platform in PLATFORMS:
        members = [(n, a) for n, p, a in robots if p == platform]
        lines.append(f"        {platform}_robots:")
        lines.append("          hosts:" + ("" if members else " {}"))
        for name, address in members:
            lines.append(f"            {name}:")
            lines.append(f"              ansible_host: {address}")
    # The first robot takes new releases first (deploy.yml switches the canary group first).
    if robots:
        lines += ["    canary:", "      hosts:", f"        {robots[0][0]}:"]
    INVENTORY.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(INVENTORY, "\n".join(lines) + "\n")


def write_atomic(path: Path, text: str) -> None:
    """Readers (ssh, a concurrent ansible run) see the old file or the new one, never a torn one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def cmd_up(args: argparse.Namespace) -> None:
    counts = {"orin": args.orin, "xavier": args.xavier, "jetson": args.jetson}
    subprocess.run(["bash", str(REPO / "sim" / "build-image.sh"),
                    *sorted({PLATFORMS[p] for p, n in counts.items() if n})], check=True)
    key = fleet_key()
    public_key = (key.with_suffix(".pub")).read_text(encoding="utf-8")
    wanted = robot_names(args.orin, args.xavier, args.jetson)
    for container in running_containers():
        if container["name"] not in {n for n, _ in wanted}:
            podman("rm", "-f", container["name"])
    robots = []
    for name, platform in wanted:
        robots.append((name, platform, start_robot(name, platform, public_key)))
    known_hosts = STATE_DIR / "known_hosts"
    write_atomic(known_hosts, "".join(f"{addr} {host_key(name)}\n" for name, _, addr in robots))
    write_inventory(robots, key, known_hosts)
    for name, platform, address in robots:
        print(f"{name:16} {platform:7} {address}")
    print(f"inventory: {INVENTORY.relative_to(REPO)}")


def cmd_down(_: argparse.Namespace) -> None:
    for container in running_containers():
        podman("rm", "-f", "-t", "2", container["name"])
        print(f"removed {container['name']}")
    INVENTORY.unlink(missing_ok=True)


def cmd_status(_: argparse.Namespace) -> None:
    for container in running_containers():
        print(f"{container['name']:16} {container['state']}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start (or reuse) the fleet and write the inventory")
    up.add_argument("--orin", type=int, default=int(os.environ.get("JETPOLICY_SIM_ORIN", "2")))
    up.add_argument("--xavier", type=int, default=int(os.environ.get("JETPOLICY_SIM_XAVIER", "1")))
    up.add_argument("--jetson", type=int, default=int(os.environ.get("JETPOLICY_SIM_JETSON", "1")),
                    help="aarch64 robots dressed as L4T R35 (qemu-user; slow to boot and install)")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="remove every sim robot").set_defaults(func=cmd_down)
    sub.add_parser("status", help="list sim robots").set_defaults(func=cmd_status)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
