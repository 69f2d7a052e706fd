"""policy_artifact's signature check (policy_artifact_require_signature), run for real: the role's
release.yml (leftovers, stage, gpgv, rename) with ansible-playbook against localhost (a local
connection, a policy root under tmp_path), and a signing key made for the test in a throwaway
GnuPG home. Nothing here reaches a robot."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_paths import ANSIBLE_CFG, REPO
from local_role import ANSIBLE_PLAYBOOK, run_role_tasks

from jetpolicy.controller.signing import sign_policy

pytestmark = pytest.mark.skipif(
    shutil.which("gpg") is None or shutil.which("gpgv") is None,
    reason="gpg and gpgv are not installed (Debian: apt-get install gnupg gpgv)",
)


@pytest.fixture(scope="module")
def gnupg_home() -> Iterator[tuple[Path, str]]:
    """A throwaway GnuPG home with one signing key, its fingerprint, and public.gpg exported."""
    home = Path(tempfile.mkdtemp(prefix="jp-gpg-"))  # short: gpg-agent's socket lives here
    gpg = ["gpg", "--homedir", str(home), "--batch"]
    subprocess.run([*gpg, "--passphrase", "", "--quick-gen-key", "release <r@example.invalid>", "ed25519", "sign", "never"],
                   check=True, capture_output=True)  # fmt: skip
    listed = subprocess.run(
        [*gpg, "--with-colons", "--list-secret-keys"], check=True, capture_output=True, text=True
    )
    fingerprint = next(line.split(":")[9] for line in listed.stdout.splitlines() if line.startswith("fpr:"))
    (home / "public.gpg").write_bytes(
        subprocess.run([*gpg, "--export", fingerprint], check=True, capture_output=True).stdout
    )
    try:
        yield home, fingerprint
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False, capture_output=True
        )
        shutil.rmtree(home, ignore_errors=True)


def make_policy(tmp_path: Path) -> tuple[Path, Path, str]:
    """A policy directory (the role never parses the model here) and the reference cache validate.yml would fill."""
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "policy.onnx").write_bytes(b"stands in for an ONNX model")
    sha256 = hashlib.sha256((policy / "policy.onnx").read_bytes()).hexdigest()
    (policy / "policy.json").write_text(
        json.dumps({"sha256": sha256, "control_rate_hz": 100.0}), encoding="utf-8"
    )
    cache = tmp_path / "cache"
    (cache / sha256[:16]).mkdir(parents=True)
    (cache / sha256[:16] / "reference.npz").write_bytes(b"npz")
    return policy, cache, sha256


def run_release(tmp_path: Path, role_vars: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return run_role_tasks(tmp_path, "Stage the release on the robot", "policy_artifact", "release", role_vars, *args)


def role_vars(tmp_path: Path, policy: Path, cache: Path, sha256: str, **extra: Any) -> dict[str, Any]:
    return {
        "policy_artifact_root": str(tmp_path / "root"),
        "policy_artifact_source_dir": str(policy),
        "policy_artifact_controller_cache": str(cache),
        "policy_release_sha256": sha256,
        "policy_release_id": sha256[:16],
        **extra,
    }


def _flat(result: subprocess.CompletedProcess[str]) -> str:
    return " ".join((result.stdout + result.stderr).split())


def test_a_signed_release_is_verified_and_renamed_into_place(
    tmp_path: Path, gnupg_home: tuple[Path, str]
) -> None:
    """Signed: check mode writes nothing; the run stages, verifies with gpgv and renames the release
    into place with its signature, the keyring installed; a second run verifies the release already
    there and changes nothing; a release whose manifest was altered on the robot is refused and kept."""
    home, fingerprint = gnupg_home
    policy, cache, sha256 = make_policy(tmp_path)
    sign_policy(policy, fingerprint, home)
    signed = role_vars(tmp_path, policy, cache, sha256, policy_artifact_require_signature=True,
                       policy_artifact_signing_keyring=str(home / "public.gpg"))  # fmt: skip
    root = tmp_path / "root"
    release = root / "releases" / sha256[:16]

    checked = run_release(tmp_path, signed, "--check")
    assert checked.returncode == 0, _flat(checked)
    assert not release.exists() and not (root / "trusted-keys.gpg").exists()

    ran = run_release(tmp_path, signed)
    assert ran.returncode == 0, _flat(ran)
    assert "Verify the release's signature with gpgv" in ran.stdout
    assert sorted(p.name for p in release.iterdir()) == [
        "policy.json",
        "policy.json.sig",
        "policy.onnx",
        "reference.npz",
    ]
    assert (root / "trusted-keys.gpg").read_bytes() == (home / "public.gpg").read_bytes()
    assert [p.name for p in (root / "releases").iterdir()] == [sha256[:16]]

    again = run_release(tmp_path, signed)
    assert again.returncode == 0 and "changed=0" in again.stdout, _flat(again)
    assert "Verify the signature of the release already on the robot" in again.stdout

    (release / "policy.json").write_text(
        json.dumps({"sha256": sha256, "control_rate_hz": 5.0}), encoding="utf-8"
    )
    altered = run_release(tmp_path, signed)
    output = _flat(altered)
    assert altered.returncode != 0, output
    assert f"{release}/policy.json.sig does not verify policy.json" in output and "BAD signature" in output
    assert f"Fix: remove {release} on the robot" in output
    assert (release / "policy.onnx").is_file()


@pytest.mark.parametrize("tamper", ["edited-after-signing", "signed-for-another-model"])
def test_a_tampered_policy_fails_and_never_becomes_a_release(
    tamper: str, tmp_path: Path, gnupg_home: tuple[Path, str]
) -> None:
    """policy.json changed after signing (the model's sha256 still matching), or a signed manifest
    naming another model beside this model: the host fails with the file, the keyring, gpgv's
    output (or the two sha256s) and the fix, and neither a release nor the staging directory is left."""
    home, fingerprint = gnupg_home
    policy, cache, sha256 = make_policy(tmp_path)
    other_model = "0" * 64
    if tamper == "signed-for-another-model":
        (policy / "policy.json").write_text(
            json.dumps({"sha256": other_model, "control_rate_hz": 100.0}), encoding="utf-8"
        )
    sign_policy(policy, fingerprint, home)
    if tamper == "edited-after-signing":
        (policy / "policy.json").write_text(
            json.dumps({"sha256": sha256, "control_rate_hz": 1000.0}), encoding="utf-8"
        )
    keyring = home / "public.gpg"
    result = run_release(tmp_path, role_vars(tmp_path, policy, cache, sha256, policy_artifact_require_signature=True,
                                             policy_artifact_signing_keyring=str(keyring)))  # fmt: skip
    output = _flat(result)
    assert result.returncode != 0, output
    staging = tmp_path / "root" / "releases" / f".staging-{sha256[:16]}"
    if tamper == "edited-after-signing":
        assert f"{staging}/policy.json.sig does not verify policy.json" in output
        assert (
            f"trusted keys in {tmp_path / 'root' / 'trusted-keys.gpg'} (from {keyring} on the controller)"
            in output
        )
        assert "gpgv exited 1: gpgv: Signature made" in output and "BAD signature" in output
    else:
        assert (
            f"{staging}/policy.json is signed by a trusted key but names model sha256 {other_model}" in output
        )
        assert f"not the model staged ({sha256})" in output
    assert (
        "The staging directory was removed and nothing was switched; the running release is untouched."
        in output
    )
    assert f"jetpolicy sign --policy {policy}" in output
    assert list((tmp_path / "root" / "releases").iterdir()) == []


def test_a_robot_without_gpgv_is_told_the_package(tmp_path: Path, gnupg_home: tuple[Path, str]) -> None:
    """gpgv missing on the robot: the host stops naming the package, before any release appears."""
    home, fingerprint = gnupg_home
    policy, cache, sha256 = make_policy(tmp_path)
    sign_policy(policy, fingerprint, home)
    result = run_release(tmp_path, role_vars(tmp_path, policy, cache, sha256, policy_artifact_require_signature=True,
                                             policy_artifact_signing_keyring=str(home / "public.gpg"),
                                             policy_artifact_gpgv=str(tmp_path / "no" / "gpgv")))  # fmt: skip
    output = _flat(result)
    assert result.returncode != 0, output
    assert "Install the gpgv package on the robot (apt-get install gpgv" in output
    assert not (tmp_path / "root" / "releases" / sha256[:16]).exists()


def test_signatures_off_adds_nothing_to_the_robot(tmp_path: Path) -> None:
    """The default (off): an unsigned policy stages as before, with no signature and no keyring on the robot."""
    policy, cache, sha256 = make_policy(tmp_path)
    result = run_release(tmp_path, role_vars(tmp_path, policy, cache, sha256))
    assert result.returncode == 0, _flat(result)
    root = tmp_path / "root"
    assert sorted(p.name for p in (root / "releases" / sha256[:16]).iterdir()) == [
        "policy.json",
        "policy.onnx",
        "reference.npz",
    ]
    assert sorted(p.name for p in root.iterdir()) == ["releases"]


FAKE_CONTROLLER_PYTHON = """\
#!{python}
# `python -m jetpolicy ...` for validate.yml: validate and reference faked (no ONNX here),
# verify-signature the real command.
import hashlib, json, os, sys
args = sys.argv[3:]
if args[0] == "verify-signature":
    os.execv({python!r}, [{python!r}, "-m", "jetpolicy", *args])
model = args[args.index("--model") + 1]
if args[0] == "validate":
    digest = hashlib.sha256(open(model, "rb").read()).hexdigest()
    print(json.dumps({{"valid": True, "problems": [], "name": "fake", "sha256": digest}}))
else:
    out = args[args.index("--out") + 1]
    os.makedirs(os.path.dirname(out), exist_ok=True)
    open(out, "wb").write(b"npz")
"""

VALIDATE_PLAY = """\
- name: Validate the policy on the controller
  hosts: robots
  gather_facts: false
  any_errors_fatal: true
  tasks:
    - name: Validate as deploy.yml does
      ansible.builtin.include_role:
        name: policy_artifact
        tasks_from: validate
"""


def test_the_validation_play_stops_an_unsigned_policy_for_a_group_that_requires_one(
    tmp_path: Path, gnupg_home: tuple[Path, str]
) -> None:
    """policy_artifact_require_signature in one group's vars: an unsigned policy stops deploy.yml's
    validation play for that group's host, with the CLI's cause and fix; the other group does not
    check. Signed, the play passes."""
    home, fingerprint = gnupg_home
    policy, _, _ = make_policy(tmp_path)
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_CONTROLLER_PYTHON.format(python=sys.executable), encoding="utf-8")
    fake.chmod(0o755)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {"all": {"children": {"robots": {
        "vars": {"jetpolicy_policy_dir": str(policy), "policy_artifact_controller_python": str(fake),
                 "policy_artifact_controller_cache": str(tmp_path / "cache")},
        "children": {
            "signed_robots": {"hosts": {"test-signed-1": local}, "vars": {
                "policy_artifact_require_signature": True,
                "policy_artifact_signing_keyring": str(home / "public.gpg")}},
            "other_robots": {"hosts": {"test-other-1": local}},
        },
    }}}}  # fmt: skip
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    (tmp_path / "validate.yml").write_text(VALIDATE_PLAY, encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ANSIBLE_CFG), ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks",
               JETPOLICY_REPORTS_DIR=str(tmp_path / "reports"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))  # fmt: skip
    argv = [str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "validate.yml")]

    unsigned = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    output = _flat(unsigned)
    assert unsigned.returncode != 0, output
    assert (
        f"test-signed-1 requires a signed policy: jetpolicy: error: {policy}/policy.json.sig is missing"
        in output
    )
    assert f"fix: sign it on the controller: jetpolicy sign --policy {policy} --key KEYID" in output
    assert "test-other-1 requires" not in output

    sign_policy(policy, fingerprint, home)
    signed = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert signed.returncode == 0, _flat(signed)
