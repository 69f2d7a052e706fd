#!/usr/bin/env bash
# Install everything the controller needs, from nothing: Debian packages (podman, runc,
# debootstrap), the Python virtualenv (.venv) with Ansible, Molecule, PyTorch (CPU) and the
# jetpolicy package, and the simulated-robot images. Safe to rerun: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv}"

sudo_cmd=""
[ "$(id -u)" = 0 ] || sudo_cmd="sudo"
need_apt=()
for cmd in podman runc debootstrap ssh-keygen ssh qemu-aarch64-static update-binfmts; do
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$cmd")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages for: ${need_apt[*]}"
  $sudo_cmd apt-get update -qq
  # qemu-user-static + binfmt-support run the arm64 (Jetson-shaped) sim robots on this x86 host.
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq \
    podman runc debootstrap uidmap slirp4netns openssh-client qemu-user-static binfmt-support >/dev/null
fi
bash scripts/enable-arm64.sh

# A virtualenv holds exactly its lock (requirements/*.lock, `make lock` refreshes them): installed
# with --require-hashes, then checked against it. A changed lock rebuilds the venv from nothing, so
# no package of an earlier lock stays behind.
locked_venv() {
  local venv="$1" lock="$2" stamp want
  stamp="$venv/.jetpolicy-lock"
  want="$(cat "$lock" python/pyproject.toml | sha256sum | cut -d' ' -f1)"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  echo "setup: creating $venv from $lock (a few minutes the first time)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --require-hashes --no-deps -r "$lock"
  # The package itself, editable, built by the locked setuptools (no isolated build env).
  "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e python/
  "$venv/bin/python" scripts/check_lock.py "$lock"
  echo "$want" >"$stamp"
}

locked_venv "$venv" requirements/controller.lock
# `scripts/setup.sh oldest-ansible` (the test suite's fleet stage) adds the oldest supported
# ansible-core's venv beside it.
if [ "${1:-}" = oldest-ansible ]; then
  locked_venv "${VENV_OLDEST:-.venv-oldest}" requirements/fleet-oldest.lock
fi

bash sim/build-image.sh
