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

stamp="$venv/.jetpolicy-requirements"
want="$(cat requirements/controller.txt python/pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating $venv (Ansible, Molecule, PyTorch CPU, ONNX; a few minutes the first time)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r requirements/controller.txt
  "$venv/bin/pip" install -q --no-deps -e python/
  echo "$want" >"$stamp"
fi

bash sim/build-image.sh
