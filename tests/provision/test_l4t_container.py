"""The role's L4T steps on a sim robot dressed up as a JetPack 6 robot (real container, systemd).

The container gets /etc/nv_tegra_release (R36.4), an NVIDIA apt source, an nvpmodel stand-in that
behaves like the real one (query output, "Reboot required" prompt for mode 3, recorded from
public logs), jetson_clocks and trtexec stand-ins and an extlinux.conf. Packages cannot be
installed here (no NVIDIA repository), so runs use jetson_provision_install_packages=false except
the one that must be refused before apt runs. Needs podman and the sim image; skipped otherwise.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from provision_podman import (
    REPO,
    VENV_BIN,
    playbook,
    podman_env,
    remove,
    sh,
    start,
    unavailable_reason,
    write_inventory,
)

IMAGE = "localhost/jetpolicy-sim:bookworm"
PLAY = REPO / "playbooks" / "provision.yml"
HOST = "robot-orin-fake"

_reason = unavailable_reason(IMAGE)
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")

SETUP = r"""
set -e
echo '# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: Fri Sep 13 04:36:44 UTC 2024' > /etc/nv_tegra_release
printf 'deb https://repo.download.nvidia.com/jetson/common r36.4 main\ndeb https://repo.download.nvidia.com/jetson/t234 r36.4 main\n' > /etc/apt/sources.list.d/nvidia-l4t-apt-source.list
printf '< POWER_MODEL ID=0 NAME=MAXN >\n< POWER_MODEL ID=3 NAME=MODE_7W >\n< PM_CONFIG DEFAULT=0 >\n' > /etc/nvpmodel.conf
mkdir -p /var/lib/nvpmodel && echo pmode:0001 > /var/lib/nvpmodel/status
cat > /usr/sbin/nvpmodel <<'SH'
#!/bin/sh
status=/var/lib/nvpmodel/status
mode=$(sed -n 's/^pmode:0*\([0-9][0-9]*\).*/\1/p' $status 2>/dev/null); mode=${mode:-0}
case "$1" in
  -q) echo "NV Power Mode: MODE_$mode"; echo "$mode" ;;
  -m) if [ "$2" = 3 ]; then
        echo "NVPM WARN: Golden image context is already created"
        echo "NVPM WARN: Reboot required for changing to this power mode: 3"
        echo "NVPM WARN: DO YOU WANT TO REBOOT NOW? enter YES/yes to confirm:"
        read answer || true
        echo "NVPM ERROR: optMask is 1, no request for power mode"; exit 0
      fi
      printf 'pmode:%04d\n' "$2" > $status ;;
esac
SH
printf '#!/bin/sh\ndate +%%s.%%N >> /run/jetson_clocks.ran\n' > /usr/bin/jetson_clocks
mkdir -p /usr/src/tensorrt/bin && printf '#!/bin/sh\nexit 0\n' > /usr/src/tensorrt/bin/trtexec
chmod 0755 /usr/sbin/nvpmodel /usr/bin/jetson_clocks /usr/src/tensorrt/bin/trtexec
mkdir -p /boot/extlinux
printf 'TIMEOUT 30\nDEFAULT primary\n\nLABEL primary\n      LINUX /boot/Image\n      APPEND ${cbootargs} root=/dev/mmcblk0p1 rw rootwait\n' > /boot/extlinux/extlinux.conf
"""


@pytest.fixture(scope="module")
def fake_orin() -> Iterator[str]:
    name = start(IMAGE, ["--systemd=always"], ["/sbin/init"])
    try:
        for _ in range(30):
            if sh(name, "systemctl is-system-running").stdout.strip() in ("running", "degraded"):
                break
            time.sleep(0.5)
        setup = sh(name, SETUP)
        assert setup.returncode == 0, setup.stderr
        yield name
    finally:
        remove(name)


@pytest.fixture()
def inventory(fake_orin: str, tmp_path: Path) -> Path:
    return write_inventory(tmp_path / "hosts.yml", HOST, fake_orin)


def _out(run: object) -> str:
    return run.stdout + run.stderr  # type: ignore[attr-defined]


FULL_L4T = (
    '{"jetson_provision_install_packages": false, "jetson_provision_nvpmodel_mode": 2,'
    ' "jetson_provision_jetson_clocks": true, "jetson_provision_isolcpus": true,'
    ' "jetson_provision_isolcpus_cpus": "3"}'
)
STATE = "cat /var/lib/nvpmodel/status /boot/extlinux/extlinux.conf; ls /etc/systemd/system; getent passwd jetpolicy"


def test_check_mode_on_fresh_robot_changes_nothing(fake_orin: str, inventory: Path) -> None:
    """Check mode with every L4T step on succeeds, says a reboot would be needed, changes nothing."""
    before = sh(fake_orin, STATE).stdout
    run = playbook(inventory, PLAY, "--check", "-e", FULL_L4T)
    output = _out(run)
    assert run.returncode == 0, output
    assert f"{HOST}: would need a reboot: isolcpus=3" in output, output
    assert sh(fake_orin, STATE).stdout == before


def test_nvpmodel_reboot_mode_is_staged_when_reboots_are_allowed(fake_orin: str, tmp_path: Path) -> None:
    """With stage_for_reboot the reboot-only mode becomes the boot default (the play then reboots)."""
    sh(fake_orin, "cp /etc/nvpmodel.conf /root/nvp.bak && cp /var/lib/nvpmodel/status /root/status.bak")
    try:
        inventory = write_inventory(tmp_path / "hosts.yml", HOST, fake_orin)
        run = subprocess.run(
            [str(VENV_BIN / "ansible"), "-i", str(inventory), HOST, "-b", "-m", "jetpolicy_nvpmodel",
             "-a", "mode=3 stage_for_reboot=true"],
            cwd=REPO, env=podman_env(), capture_output=True, text=True, check=False, timeout=300,
        )
        output = run.stdout + run.stderr
        assert run.returncode == 0, output
        assert '"staged": true' in output and '"reboot_required": true' in output, output
        assert "< PM_CONFIG DEFAULT=3 >" in sh(fake_orin, "cat /etc/nvpmodel.conf").stdout
        assert sh(fake_orin, "test -e /var/lib/nvpmodel/status").returncode != 0
    finally:
        sh(fake_orin, "mv /root/nvp.bak /etc/nvpmodel.conf && mv /root/status.bak /var/lib/nvpmodel/status")


def test_mismatched_apt_source_is_refused_before_apt(fake_orin: str, inventory: Path) -> None:
    """An r35 NVIDIA source on an R36 robot stops the host before any package is installed."""
    source = "/etc/apt/sources.list.d/nvidia-l4t-apt-source.list"
    sh(fake_orin, f"cp {source} /root/src.bak && sed -i 's/r36.4/r35.4/' {source}")
    try:
        run = playbook(inventory, PLAY, "-e", "jetson_provision_manage_power=false")
    finally:
        sh(fake_orin, f"mv /root/src.bak {source}")
    output = _out(run)
    assert run.returncode == 2, output
    assert re.search(rf"{HOST}: .*uses suite r35.4 but this robot runs L4T R36.4", output), output
    assert "Install the pinned JetPack runtime packages" not in output


def test_l4t_steps_apply_then_fail_on_pending_isolcpus_reboot(fake_orin: str, inventory: Path) -> None:
    """Power mode, clocks unit, GPU groups, trtexec fact and isolcpus are applied for real; the
    isolcpus reboot is not allowed, so the host fails saying so (never silently)."""
    run = playbook(
        inventory,
        PLAY,
        "-e",
        FULL_L4T,
    )
    output = _out(run)
    assert run.returncode == 2, output
    assert re.search(
        rf"{HOST}: reboot required: isolcpus=3 is in /boot/extlinux/extlinux.conf but not in the running "
        r"kernel \(/proc/cmdline\)\. Set jetson_provision_allow_reboot=true",
        output,
    ), output
    assert sh(fake_orin, "cat /var/lib/nvpmodel/status").stdout.strip() == "pmode:0002"
    append = sh(fake_orin, "grep APPEND /boot/extlinux/extlinux.conf").stdout
    assert "isolcpus=3 nohz_full=3 rcu_nocbs=3" in append
    assert sh(fake_orin, "systemctl is-enabled jetpolicy-jetson-clocks.service").stdout.strip() == "enabled"
    assert sh(fake_orin, "test -s /run/jetson_clocks.ran").returncode == 0
    groups = sh(fake_orin, "id -nG jetpolicy").stdout.split()
    assert "video" in groups


def test_power_mode_needing_reboot_fails_without_permission(fake_orin: str, inventory: Path) -> None:
    """nvpmodel's reboot-only mode is detected; without jetson_provision_allow_reboot the host
    fails naming the mode, and nvpmodel's state and boot default are left untouched."""
    before = sh(fake_orin, "cat /var/lib/nvpmodel/status /etc/nvpmodel.conf").stdout
    run = playbook(
        inventory,
        PLAY,
        "-e",
        '{"jetson_provision_install_packages": false, "jetson_provision_nvpmodel_mode": 3}',
    )
    output = _out(run)
    assert run.returncode == 2, output
    assert re.search(rf"{HOST}: reboot required: nvpmodel mode 3 \(jetson_provision_nvpmodel_mode=3\) only applies after a reboot", output), output
    assert sh(fake_orin, "cat /var/lib/nvpmodel/status /etc/nvpmodel.conf").stdout == before


def test_second_run_changes_nothing_and_check_mode_passes(fake_orin: str, inventory: Path) -> None:
    """With the earlier settings applied (isolcpus off now), a run reports changed=0, also in check mode."""
    extra = (
        '{"jetson_provision_install_packages": false, "jetson_provision_nvpmodel_mode": 2,'
        ' "jetson_provision_jetson_clocks": true}'
    )
    first = playbook(inventory, PLAY, "-e", extra)
    assert first.returncode == 0, _out(first)
    for args in (("-e", extra), ("--check", "-e", extra)):
        run = playbook(inventory, PLAY, *args)
        output = _out(run)
        assert run.returncode == 0, output
        assert re.search(rf"{HOST}\s+: ok=\d+\s+changed=0\s", output), output
