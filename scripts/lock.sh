#!/usr/bin/env bash
# Refresh every lock (`make lock`), then commit what changed under requirements/:
#   requirements/controller.lock    the controller's virtualenv (.venv), from controller.in and the
#                                   package's ranges in python/pyproject.toml; pip-compile (pip-tools)
#   requirements/fleet-oldest.lock  the oldest supported ansible-core's virtualenv (.venv-oldest),
#                                   for the fleet tests at that end of the support range
#   requirements/robot/*.lock       one per robot platform (Python x arch x glibc, L4T or not): the
#                                   runtime bundle's wheels; uv, which resolves for a platform other
#                                   than the controller's
# Every lock carries sha256 hashes; setup and the robots install with --require-hashes.
# A new kind of robot: add its line to ROBOT_PLATFORMS and run `make lock`.
# Needs the package index (PyPI) and the tools of the controller lock (.venv: pip-tools, uv).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv}"
[ -x "$venv/bin/pip-compile" ] && [ -x "$venv/bin/uv" ] || {
  echo "lock: pip-compile and uv come with the controller venv: run \`make setup\` first" >&2
  exit 2
}

# python  arch     glibc  l4t  what
ROBOT_PLATFORMS=(
  "3.8  aarch64 2.31 l4t  JetPack 5 (L4T r35, Ubuntu 20.04)"
  "3.10 aarch64 2.35 l4t  JetPack 6 (L4T r36, Ubuntu 22.04)"
  "3.9  aarch64 2.31 l4t  sim jetson robots (Debian bullseye arm64, L4T-shaped)"
  "3.11 x86_64  2.36 -    sim orin robots and Molecule (Debian bookworm)"
  "3.9  x86_64  2.31 -    sim xavier robots and Molecule (Debian bullseye)"
)

# No index or find-links lines in the locks: those are this machine's pip settings, not the lock's.
# The torch pin is PyTorch's CPU build (torch==2.13.0+cpu), from the PyTorch CPU index or a wheel
# cache; see README "Locked installs".
compile_controller() {
  local src="$1" out="$2"
  echo "lock: $out"
  "$venv/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
    --no-emit-index-url --no-emit-find-links \
    --extra export --extra controller --output-file "$out" python/pyproject.toml "$src"
}
compile_controller requirements/controller.in requirements/controller.lock
compile_controller requirements/fleet-oldest.in requirements/fleet-oldest.lock

for line in "${ROBOT_PLATFORMS[@]}"; do
  read -r python arch glibc l4t _ <<<"$line"
  name="py$python-$arch-glibc$glibc"
  constraints=()
  if [ "$l4t" = l4t ]; then
    name="$name-l4t"
    constraints=(-c requirements/robot/l4t-constraints.txt)
  fi
  out="requirements/robot/$name.lock"
  echo "lock: $out"
  # --only-binary: a robot builds nothing; --no-header keeps a machine's paths out of the file.
  "$venv/bin/uv" pip compile --quiet --generate-hashes --only-binary :all: --no-header \
    --python-version "$python" --python-platform "$arch-manylinux_${glibc//./_}" \
    "${constraints[@]}" -o "$out.tmp" python/pyproject.toml requirements/robot/runtime.in
  { echo "# Robot runtime lock for Python $python, $arch, glibc $glibc${l4t/-/}; made by \`make lock\`"
    echo "# (scripts/lock.sh) from python/pyproject.toml and requirements/robot/runtime.in. Do not edit."
    cat "$out.tmp"; } >"$out"
  rm -f "$out.tmp"
done
echo "lock: done; review with git diff requirements/ and commit"
