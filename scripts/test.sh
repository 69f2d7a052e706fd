#!/usr/bin/env bash
# The full test suite, from a fresh clone: installs what it needs (scripts/setup.sh), then runs
# static checks, the jetpolicy package tests, the module/provision/rollout tests, the sim-fleet
# integration tests (real playbooks against podman robots) and the Molecule scenarios.
# Stages can be picked: scripts/test.sh lint unit fleet molecule (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
# Both ends of the supported ansible-core range: .venv (requirements/controller.lock, the newest)
# and .venv-oldest (requirements/fleet-oldest.lock, the oldest) for the x86 fleet tests.
bash scripts/setup.sh oldest-ansible
export PATH="$PWD/.venv/bin:$PATH"
export CONTAINERS_CONF="$PWD/sim/containers.conf"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(lint unit fleet molecule)

run_stage() {
  local name="$1"; shift
  local start=$SECONDS
  echo "=== $name"
  "$@"
  echo "=== $name passed in $((SECONDS - start)) s"
}

lint() {
  ruff check python/src python/tests tests sim bench scripts/check_lock.py
  (cd python && mypy && lint-imports --no-cache)
  # The robot side runs on JetPack 5's Python 3.8: syntax and standard library checked for it.
  vermin -q --no-tips --violations --eval-annotations -t=3.8- \
    python/src/jetpolicy/__init__.py python/src/jetpolicy/__main__.py python/src/jetpolicy/cli.py \
    python/src/jetpolicy/common python/src/jetpolicy/robot
  mypy --strict sim bench tests/fleet scripts/check_lock.py
  ansible-lint --profile production --offline -q
  # ansible-test sanity over library/ and module_utils/ (about a minute once its venvs exist).
  bash scripts/sanity.sh
  python3 scripts/role_docs.py --check
}

unit() {
  (cd python && pytest -q -p no:cacheprovider)
  pytest -q -p no:cacheprovider tests/modules tests/provision tests/rollout
}

locked_core() {
  sed -n 's/^ansible-core==\([0-9.]*\).*/\1/p' "$1"
}

fleet() {
  python3 sim/fleet.py up
  # Two runs side by side on one fleet: the x86 robots and the emulated aarch64 L4T robot share no
  # host, and the Jetson one spends most of its time waiting on qemu. They also split the supported
  # ansible-core range between them: the Jetson tests (and Molecule, and the playbook tests of the
  # unit stage) with the newest end, the x86 tests with the oldest; each checks it got its core.
  local logs rc_x86=0 rc_jetson=0
  logs="$(mktemp -d)"
  JETPOLICY_EXPECT_ANSIBLE_CORE="$(locked_core requirements/controller.lock)" \
    pytest -q -p no:cacheprovider tests/fleet -m jetson >"$logs/jetson.log" 2>&1 &
  local jetson_pid=$!
  JETPOLICY_EXPECT_ANSIBLE_CORE="$(locked_core requirements/fleet-oldest.lock)" \
    .venv-oldest/bin/python -m pytest -q -p no:cacheprovider tests/fleet -m "not jetson" || rc_x86=$?
  wait "$jetson_pid" || rc_jetson=$?
  echo "--- Jetson (L4T-shaped aarch64) fleet tests"
  cat "$logs/jetson.log"
  rm -rf "$logs"
  [ "$rc_x86" = 0 ] && [ "$rc_jetson" = 0 ]
}

molecule_scenarios() {
  molecule test -s default
  molecule test -s provision
}

for stage in "${stages[@]}"; do
  case "$stage" in
    lint) run_stage lint lint ;;
    unit) run_stage unit unit ;;
    fleet) run_stage fleet fleet ;;
    molecule) run_stage molecule molecule_scenarios ;;
    *) echo "unknown stage $stage (lint, unit, fleet, molecule)" >&2; exit 2 ;;
  esac
done
echo "all test stages passed"
