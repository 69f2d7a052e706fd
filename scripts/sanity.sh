#!/usr/bin/env bash
# ansible-test sanity over the custom modules (library/) and their module_utils (module_utils/),
# the checks Ansible runs on its own modules, plus `ansible-doc -M library` for every module.
#
# ansible-test only tests collections, so a throwaway collection view (jetpolicy.fleet) is built in
# a temp dir: library/*.py -> plugins/modules, module_utils/*.py -> plugins/module_utils. The repo
# keeps its playbook layout; only the view's copies have their `ansible.module_utils.jetpolicy_*`
# imports spelled the collection way (same lines, so reported line numbers match the real files),
# and reported paths are mapped back to library/ and module_utils/.
#
# Python versions: the controller tests run on this Python (3.11+). compile and import also run on
# the robots' Pythons 3.8-3.10 when they are installed (on PATH or under pyenv); vermin checks the
# 3.8 floor (syntax and standard library) either way, so a machine without them still checks it.
#
# Tests: all of ansible-test's default set for a collection (validate-modules, ansible-doc, compile,
# import, pep8, pylint, yamllint, runtime-metadata, the code-smell checks) except
#   shellcheck: there are no shell scripts in the view, and the binary may be missing;
#   pslint: PowerShell only.
# Measured on the 2-core dev machine: 36-53 s once ansible-test's per-test virtualenvs exist;
# about 4 minutes the first time, which builds them from PyPI.
#
# ansible-test keeps those virtualenvs under ~/.ansible/test; HOME points at .cache/sanity-home so
# they stay out of the user's home and are reused between runs. ansible-test bootstraps pip into
# each with a get-pip script from ci-files.testing.ansible.com, which is not always reachable (it is
# not from the dev machine; PyPI is): a stand-in at the script's cache path uses ensurepip and then
# installs the pinned pip from the package index instead.
#
# Ignores: tests/sanity/ignore-<ansible-core major.minor>.txt, with repo paths (library/x.py); each
# line carries a comment saying why (ansible-test allows no comment-only lines). The one kind there:
# validate-modules wants every module to carry Ansible's own GPLv3 header, and jetpolicy is
# Apache-2.0. Usage: scripts/sanity.sh [extra ansible-test sanity options].
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
start=$SECONDS

ansible_test="$(command -v ansible-test)" || {
  echo "sanity: ansible-test not found (scripts/setup.sh installs it into .venv)" >&2
  exit 2
}
bin_dir="$(dirname "$ansible_test")"
core_version="$("$bin_dir/python" -c 'import ansible.release as r; print(".".join(r.__version__.split(".")[:2]))')"

view_root="$(mktemp -d)"
trap 'rm -rf "$view_root"' EXIT
view="$view_root/ansible_collections/jetpolicy/fleet"
mkdir -p "$view/plugins/modules" "$view/plugins/module_utils" "$view/meta" "$view/tests/sanity"
cp library/*.py "$view/plugins/modules/"
cp module_utils/*.py "$view/plugins/module_utils/"
sed -i -E 's/^([[:space:]]*from )ansible\.module_utils\.(jetpolicy_[a-z_]+)/\1ansible_collections.jetpolicy.fleet.plugins.module_utils.\2/' \
  "$view"/plugins/modules/*.py "$view"/plugins/module_utils/*.py
# The supported ansible-core range (README "Supported versions"; the inventory check enforces it).
printf -- '---\nrequires_ansible: ">=2.18.0,<2.20.0"\n' >"$view/meta/runtime.yml"
cat >"$view/galaxy.yml" <<'EOF'
namespace: jetpolicy
name: fleet
version: 0.1.0
readme: README.md
authors: [jetpolicy contributors]
license: [Apache-2.0]
EOF
echo "Throwaway view of jetpolicy's library/ and module_utils/ for ansible-test sanity." >"$view/README.md"
# ansible-test reads only the file named for the running ansible-core; the newest one stands in
# for a core that has none yet (its ignores test then says if a line no longer applies).
ignore="tests/sanity/ignore-$core_version.txt"
if [ ! -f "$ignore" ]; then
  ignore="$(printf '%s\n' tests/sanity/ignore-*.txt | sort -V | tail -n 1)"
  if [ -f "$ignore" ]; then
    echo "sanity: no ignore file for ansible-core $core_version; using $ignore"
  else
    ignore=""
  fi
fi
if [ -n "$ignore" ]; then
  sed -E 's#^library/#plugins/modules/#; s#^module_utils/#plugins/module_utils/#' "$ignore" \
    >"$view/tests/sanity/ignore-$core_version.txt"
fi

# Interpreters that really run: a pyenv shim for a version pyenv has not activated is on PATH
# but fails, and ansible-test would pick it.
py_bin="$view_root/bin"
mkdir -p "$py_bin"
pythons=("$("$bin_dir/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')")
pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
for version in 3.8 3.9 3.10; do
  found=""
  if command -v "python$version" >/dev/null && "python$version" -c '' 2>/dev/null; then
    found="$(command -v "python$version")"
  else
    for candidate in "$pyenv_root"/versions/"$version".*/bin/"python$version"; do
      [ -x "$candidate" ] && found="$candidate"
    done
  fi
  if [ -n "$found" ]; then
    ln -s "$found" "$py_bin/python$version"
    pythons+=("$version")
  else
    echo "sanity: no Python $version here; compile/import not run on it (vermin checks the 3.8 floor)"
  fi
done

sanity_home="$repo/.cache/sanity-home"
get_pip="$sanity_home/.ansible/test/cache/get_pip_24_2.py"
mkdir -p "$(dirname "$get_pip")"
[ -f "$get_pip" ] || cat >"$get_pip" <<'EOF'
"""Stand-in for ansible-test's get-pip download: ensurepip's bundled pip, then the pinned pip."""
import subprocess
import sys

# ansible-test passes get-pip's own flags; pip install knows neither.
args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install", "-q"] + args)
EOF

python_args=()
for version in "${pythons[@]}"; do python_args+=(--target-python "$version"); done
echo "sanity: ansible-core $core_version, Pythons ${pythons[*]}"
# Paths in ansible-test's report are the view's; map them back to the repo's. The repo's
# ansible.cfg (exported by test.sh) stays out: its module_utils path would let an import the view
# failed to rewrite pass unnoticed.
(cd "$view" && env -u ANSIBLE_CONFIG HOME="$sanity_home" PATH="$py_bin:$PATH" \
  "$ansible_test" sanity --color no "${python_args[@]}" \
    --skip-test shellcheck --skip-test pslint "$@") 2>&1 |
  sed -E 's#plugins/modules/#library/#g; s#plugins/module_utils/#module_utils/#g'

# The robots' floor, whatever Pythons this machine has. Without --eval-annotations (unlike the
# robot package's check in test.sh): module_utils annotate with dict[...] under
# `from __future__ import annotations`, strings nothing evaluates (the 3.8 import test runs them).
"$bin_dir/vermin" -q --no-tips --violations -t=3.8- library module_utils

# Every module's documentation renders the way users read it.
modules=()
for path in library/*.py; do modules+=("$(basename "$path" .py)"); done
doc_err="$view_root/ansible-doc.err"
if ! ANSIBLE_CONFIG="$repo/ansible.cfg" "$bin_dir/ansible-doc" -M library -t module "${modules[@]}" \
  >/dev/null 2>"$doc_err" || [ -s "$doc_err" ]; then
  echo "sanity: ansible-doc -M library does not render every module cleanly:" >&2
  cat "$doc_err" >&2
  exit 1
fi
echo "sanity: ansible-doc renders ${modules[*]}"
echo "sanity passed in $((SECONDS - start)) s"
