#!/usr/bin/env bash
# Build the simulated-robot images (Debian + systemd as PID 1 + sshd + python3) from Debian's
# packages only: no container registry is reachable here. Images are cached: an existing image
# is kept unless JETPOLICY_SIM_REBUILD=1.
#   bookworm (Python 3.11) stands in for orin_robots, bullseye (Python 3.9) for xavier_robots,
#   bullseye-arm64 (aarch64 under qemu-user, glibc 2.31 as on JetPack 5) for jetson_robots.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
mirror="${JETPOLICY_SIM_MIRROR:-http://deb.debian.org/debian}"
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm bullseye bullseye-arm64)

build_one() {
  local image="localhost/jetpolicy-sim:$1" suite="${1%-arm64}" arch=()
  [ "$suite" = "$1" ] || arch=(--arch=arm64)
  if podman image exists "$image" && [ "${JETPOLICY_SIM_REBUILD:-0}" != 1 ]; then
    echo "sim image $image: cached"
    return
  fi
  local rootfs
  rootfs="$(mktemp -d /var/tmp/jetpolicy-sim-rootfs.XXXXXX)"
  trap 'rm -rf "$rootfs"' RETURN
  if [ ${#arch[@]} -gt 0 ]; then
    echo "sim image $image: debootstrap $suite arm64 under qemu-user (about 4 minutes)"
  else
    echo "sim image $image: debootstrap $suite (about a minute)"
  fi
  local include=systemd,systemd-sysv,dbus,openssh-server,python3,python3-venv,sudo,iproute2,procps
  # The arm64 image stands in for JetPack's Ubuntu rootfs, which ships python3-apt: Ansible's apt
  # module needs it to see the (dpkg-only) JetPack packages sim/l4t/ records as installed, offline.
  [ ${#arch[@]} -eq 0 ] || include+=,python3-apt
  debootstrap "${arch[@]}" --variant=minbase --include="$include" \
    "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log"; exit 1; }
  rm -f "$rootfs.log"
  # The admin account Ansible logs in as: key only, sudo without password (like a fleet image).
  chroot "$rootfs" useradd --create-home --shell /bin/bash robot
  echo 'robot ALL=(ALL) NOPASSWD:ALL' >"$rootfs/etc/sudoers.d/robot"
  chmod 0440 "$rootfs/etc/sudoers.d/robot"
  install -d -m 0700 -o 1000 -g 1000 "$rootfs/home/robot/.ssh"
  cat >"$rootfs/etc/ssh/sshd_config.d/jetpolicy-sim.conf" <<'CONF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
CONF
  # Host keys are generated per robot at start (sim/fleet.py), never shared through the image.
  rm -f "$rootfs"/etc/ssh/ssh_host_*
  # Units that make no sense in a container and slow its boot.
  for unit in getty@tty1.service console-getty.service systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
  done
  # Honest about what it is: a simulated robot, not L4T (no /etc/nv_tegra_release).
  echo "jetpolicy simulated robot ($suite)" >"$rootfs/etc/jetpolicy-sim"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  local import_arch=()
  [ ${#arch[@]} -eq 0 ] || import_arch=(--arch arm64)
  tar -C "$rootfs" -c . | podman import --quiet "${import_arch[@]}" --change 'CMD ["/sbin/init"]' - "$image" >/dev/null
  echo "sim image $image: built"
}

for suite in "${suites[@]}"; do build_one "$suite"; done
