"""Signed policies (jetpolicy.controller.signing): `jetpolicy sign` and `verify-signature` against
real gpg and gpgv, with keys made for the test run in throwaway GnuPG homes (none in the repo)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from jetpolicy.cli import main
from jetpolicy.common.manifest import load_manifest
from jetpolicy.controller.signing import SIGNATURE_FILE, SigningError, sign_policy, verify_policy_signature
from jetpolicy.controller.validation import validate_policy

needs_gnupg = pytest.mark.skipif(
    shutil.which("gpg") is None or shutil.which("gpgv") is None,
    reason="gpg and gpgv are not installed (Debian: apt-get install gnupg gpgv)",
)


@dataclass(frozen=True)
class SigningKey:
    home: Path
    fingerprint: str
    public: Path  # `gpg --export`, what the robots trust


def _make_key(name: str) -> Iterator[SigningKey]:
    # Short path: gpg-agent's socket lives in the home, and socket paths are limited to 108 bytes.
    home = Path(tempfile.mkdtemp(prefix="jp-gpg-"))
    home.chmod(0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch"]
    subprocess.run(
        [*gpg, "--passphrase", "", "--quick-gen-key", f"{name} <{name}@example.invalid>",
         "ed25519", "sign", "never"],
        check=True, capture_output=True,
    )  # fmt: skip
    listed = subprocess.run(
        [*gpg, "--with-colons", "--list-secret-keys"], check=True, capture_output=True, text=True
    )
    fingerprint = next(line.split(":")[9] for line in listed.stdout.splitlines() if line.startswith("fpr:"))
    public = home / "public.gpg"
    public.write_bytes(
        subprocess.run([*gpg, "--export", fingerprint], check=True, capture_output=True).stdout
    )
    try:
        yield SigningKey(home, fingerprint, public)
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False, capture_output=True
        )
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def release_key() -> Iterator[SigningKey]:
    yield from _make_key("release")


@pytest.fixture(scope="module")
def other_key() -> Iterator[SigningKey]:
    yield from _make_key("other")


@pytest.fixture
def policy(copy_release: Callable[[Path], Path], example_release: Path) -> Path:
    return copy_release(example_release)


@needs_gnupg
def test_a_signed_policy_verifies_and_keeps_its_identity(policy: Path, release_key: SigningKey) -> None:
    """sign writes policy.json.sig and touches nothing else: the manifest's bytes, and so the
    release id (the model's sha256[:16]), are what they were; the signature verifies against the
    exported public key and names the key."""
    before = (policy / "policy.json").read_bytes()
    release_id = validate_policy(policy / "policy.onnx", policy / "policy.json").sha256[:16]
    signed = sign_policy(policy, release_key.fingerprint, release_key.home)
    assert signed.signature == policy / SIGNATURE_FILE and signed.fingerprint == release_key.fingerprint
    assert (policy / "policy.json").read_bytes() == before
    assert sorted(p.name for p in policy.iterdir()) == ["policy.json", "policy.json.sig", "policy.onnx"]
    assert validate_policy(policy / "policy.onnx", policy / "policy.json").sha256[:16] == release_id
    assert verify_policy_signature(policy, release_key.public).fingerprint == release_key.fingerprint


@needs_gnupg
def test_a_manifest_changed_after_signing_fails(policy: Path, release_key: SigningKey) -> None:
    """Any edit to policy.json after signing (here the control rate) is a BAD signature."""
    sign_policy(policy, release_key.fingerprint, release_key.home)
    manifest = json.loads((policy / "policy.json").read_text(encoding="utf-8"))
    manifest["control_rate_hz"] = 1000.0
    (policy / "policy.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert load_manifest(policy / "policy.json").control_rate_hz == 1000.0
    with pytest.raises(
        SigningError, match=r"BAD signature .* policy\.json changed after it was signed"
    ) as caught:
        verify_policy_signature(policy, release_key.public)
    assert "jetpolicy sign --policy" in caught.value.fix


@needs_gnupg
def test_a_signature_by_a_key_not_in_the_keyring_fails(
    policy: Path, release_key: SigningKey, other_key: SigningKey, tmp_path: Path
) -> None:
    """Signed by another key: refused, naming that key; trusted once the keyring holds both keys
    (the rotation case: old and new key side by side)."""
    sign_policy(policy, other_key.fingerprint, other_key.home)
    with pytest.raises(SigningError, match=f"made by key {other_key.fingerprint[-16:]}, which is not in"):
        verify_policy_signature(policy, release_key.public)
    both = tmp_path / "trusted-keys.gpg"
    both.write_bytes(release_key.public.read_bytes() + other_key.public.read_bytes())
    assert verify_policy_signature(policy, both).fingerprint == other_key.fingerprint


@needs_gnupg
def test_a_missing_signature_fails_with_the_fix(policy: Path, release_key: SigningKey) -> None:
    """An unsigned policy: the message names the missing file and the command that signs it."""
    with pytest.raises(SigningError, match=r"policy.json.sig is missing: the policy is not signed") as caught:
        verify_policy_signature(policy, release_key.public)
    assert f"jetpolicy sign --policy {policy} --key KEYID" in caught.value.fix


@needs_gnupg
def test_an_armored_keyring_is_refused_with_the_fix(
    policy: Path, release_key: SigningKey, tmp_path: Path
) -> None:
    """gpgv reads binary keyrings only: an `--armor` export is named as the cause, not as a bad signature."""
    sign_policy(policy, release_key.fingerprint, release_key.home)
    armored = tmp_path / "keys.asc"
    armored.write_bytes(
        subprocess.run(
            ["gpg", "--homedir", str(release_key.home), "--batch", "--armor", "--export",
             release_key.fingerprint],
            check=True, capture_output=True,
        ).stdout
    )  # fmt: skip
    with pytest.raises(SigningError, match="ASCII-armored") as caught:
        verify_policy_signature(policy, armored)
    assert "without --armor" in caught.value.fix


@needs_gnupg
def test_signing_with_an_unknown_key_fails(policy: Path, release_key: SigningKey) -> None:
    """A key the GnuPG home does not hold: no signature written, the message says where it looked."""
    with pytest.raises(
        SigningError, match=f"no secret key 'nobody@example.invalid' in the keyring in {release_key.home}"
    ):
        sign_policy(policy, "nobody@example.invalid", release_key.home)
    assert not (policy / SIGNATURE_FILE).exists()


def test_without_gpg_the_error_names_the_package(policy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No gpg on the controller: the package to install, not a traceback."""
    monkeypatch.setenv("PATH", str(policy))
    with pytest.raises(SigningError, match="`gpg` is not installed") as caught:
        sign_policy(policy, "anything")
    assert "apt-get install gnupg" in caught.value.fix


@needs_gnupg
def test_cli_signs_and_verifies(
    policy: Path, release_key: SigningKey, other_key: SigningKey, capsys: pytest.CaptureFixture[str]
) -> None:
    """`jetpolicy sign` then `jetpolicy verify-signature`: 0 and the key; against the wrong keyring,
    exit 2 with the cause and the fix on one line."""
    assert (
        main(
            [
                "sign",
                "--policy",
                str(policy),
                "--key",
                release_key.fingerprint,
                "--gnupghome",
                str(release_key.home),
            ]
        )
        == 0
    )
    assert release_key.fingerprint in capsys.readouterr().out
    assert main(["verify-signature", "--policy", str(policy), "--keyring", str(release_key.public)]) == 0
    assert f"good signature by {release_key.fingerprint}" in capsys.readouterr().out
    assert main(["verify-signature", "--policy", str(policy), "--keyring", str(other_key.public)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jetpolicy: error: ") and "which is not in" in err and "; fix: " in err
    assert len(err.strip().splitlines()) == 1
