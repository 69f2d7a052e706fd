"""`jetpolicy sign` and `jetpolicy verify-signature`: a release's origin, not only its integrity.

The manifest's sha256 proves the model is the one the manifest names; it says nothing about who
made the manifest. A GnuPG detached signature over policy.json (policy.json.sig beside it) does:
the manifest names the model's sha256 and the robot checks the model against it, so signing the
manifest covers the model. The robot verifies with `gpgv` against a keyring of trusted public keys
(roles/policy_artifact/tasks/signature.yml); `verify-signature` is the same check on the
controller, run by the validation play so an unsigned policy stops before any robot is touched.

Both call the GnuPG binaries (no Python dependency); docs/signing.md covers the keys.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from jetpolicy.common.errors import JetpolicyError
from jetpolicy.robot.policy import MANIFEST_FILE

__all__ = [
    "SIGNATURE_FILE",
    "SignatureCheck",
    "SigningError",
    "register",
    "sign_policy",
    "verify_policy_signature",
]

SIGNATURE_FILE = MANIFEST_FILE + ".sig"

_DOCS = "docs/signing.md"


class SigningError(JetpolicyError):
    """A policy cannot be signed, or its signature does not verify."""


@dataclass(frozen=True)
class SignatureCheck:
    """A signature that verified: the file and the fingerprint of the key that made it."""

    signature: Path
    fingerprint: str


def _binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SigningError(
            f"`{name}` is not installed on this controller",
            f"install it (Debian/Ubuntu: apt-get install {package}) or put it on PATH",
        )
    return found


def _run(argv: Sequence[str], env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), env=env, capture_output=True, text=True, check=False, timeout=120)


def _one_line(text: str) -> str:
    """GnuPG's stderr on one line, without the program name starting each line."""
    lines = (
        line.split(":", 1)[1] if line.startswith(("gpg:", "gpgv:")) else line for line in text.splitlines()
    )
    return " / ".join(" ".join(line.split()) for line in lines if line.strip())


def _secret_key(gpg: str, key: str, env: Dict[str, str], home: str) -> str:
    """The fingerprint of the one secret key `key` names, checked able to sign."""
    listed = _run([gpg, "--batch", "--with-colons", "--list-secret-keys", "--", key], env)
    where = f"the keyring in {home}"
    if listed.returncode != 0:
        raise SigningError(
            f"no secret key {key!r} in {where} ({_one_line(listed.stderr) or 'gpg found none'})",
            "list the keys with `gpg --list-secret-keys`; pass --gnupghome where the key lives, or make "
            f"a signing key ({_DOCS})",
        )
    # --with-colons: a `sec` record per key, followed by its `fpr`; field 12 holds the key's usable
    # capabilities, an upper-case S when the key or one of its subkeys can sign.
    keys: List[Tuple[str, str]] = []  # (capabilities, fingerprint) per key
    for line in listed.stdout.splitlines():
        fields = line.split(":")
        if fields[0] == "sec":
            keys.append((fields[11] if len(fields) > 11 else "", ""))
        elif fields[0] == "fpr" and keys and not keys[-1][1] and len(fields) > 9:
            keys[-1] = (keys[-1][0], fields[9])
    if len(keys) != 1:
        raise SigningError(
            f"{key!r} names {len(keys)} secret keys in {where}",
            "pass the full fingerprint of the signing key (`gpg --list-secret-keys --fingerprint`)",
        )
    capabilities, fingerprint = keys[0]
    if "S" not in capabilities or not fingerprint:
        raise SigningError(
            f"secret key {key!r} ({fingerprint or 'no fingerprint'}) cannot sign (expired, revoked or "
            "without a signing subkey)",
            f"make or extend a signing key ({_DOCS}) and export its public key to the robots' keyring",
        )
    return fingerprint


def sign_policy(
    policy_dir: Union[str, Path],
    key: str,
    gnupghome: Optional[Union[str, Path]] = None,
) -> SignatureCheck:
    """Write `policy_dir/policy.json.sig`, a binary detached signature over policy.json by `key`
    (a fingerprint, key id or user id naming one secret key). policy.json itself is not touched,
    so the release identity (the model's sha256) stays what it was."""
    policy_dir = Path(policy_dir)
    manifest = policy_dir / MANIFEST_FILE
    if not manifest.is_file():
        raise SigningError(
            f"{manifest} does not exist", "pass --policy a directory with policy.onnx and policy.json"
        )
    gpg = _binary("gpg", "gnupg")
    env = dict(os.environ)
    if gnupghome is not None:
        env["GNUPGHOME"] = str(gnupghome)
    home = env.get("GNUPGHOME", "~/.gnupg")
    fingerprint = _secret_key(gpg, key, env, home)
    target = policy_dir / SIGNATURE_FILE
    # Beside the target and renamed: a reader never finds a torn signature.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        signed = _run(
            [gpg, "--batch", "--yes", "--no-armor", "--local-user", fingerprint,
             "--detach-sign", "--output", str(tmp), "--", str(manifest)],
            env,
        )  # fmt: skip
        if signed.returncode != 0 or not tmp.is_file():
            raise SigningError(
                f"gpg could not sign {manifest} with {fingerprint}: "
                f"{_one_line(signed.stderr) or 'no output'}",
                "a key with a passphrase needs gpg-agent to have it (sign once interactively, or preset "
                f"it in CI); see {_DOCS}",
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return SignatureCheck(target, fingerprint)


def _status(stdout: str, keyword: str) -> Optional[List[str]]:
    """The arguments of the first `[GNUPG:] <keyword>` status line (doc/DETAILS in GnuPG)."""
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "[GNUPG:]" and parts[1] == keyword:
            return parts[2:]
    return None


def verify_policy_signature(policy_dir: Union[str, Path], keyring: Union[str, Path]) -> SignatureCheck:
    """Check `policy_dir/policy.json.sig` against the public keys in `keyring` (a file from
    `gpg --export`) with gpgv, the check the robot runs; raise SigningError saying why it fails."""
    policy_dir = Path(policy_dir)
    manifest, signature = policy_dir / MANIFEST_FILE, policy_dir / SIGNATURE_FILE
    # gpgv looks a name without a slash up in its home directory: always pass a full path.
    keyring = Path(keyring).resolve()
    if not manifest.is_file():
        raise SigningError(
            f"{manifest} does not exist", "pass --policy a directory with policy.onnx and policy.json"
        )
    if not signature.is_file():
        raise SigningError(
            f"{signature} is missing: the policy is not signed",
            f"sign it on the controller: jetpolicy sign --policy {policy_dir} --key KEYID ({_DOCS})",
        )
    if not keyring.is_file():
        raise SigningError(
            f"keyring {keyring} does not exist",
            f"export the trusted public keys to it: gpg --export KEYID > {keyring} ({_DOCS})",
        )
    with keyring.open("rb") as handle:
        armored = handle.read(64).lstrip().startswith(b"-----BEGIN PGP")
    if armored:
        raise SigningError(
            f"keyring {keyring} is ASCII-armored, which gpgv cannot read",
            f"export it without --armor (gpg --export KEYID > {keyring}) or convert it with gpg --dearmor",
        )
    gpgv = _binary("gpgv", "gpgv")
    checked = _run([gpgv, "--status-fd", "1", "--keyring", str(keyring), "--", str(signature), str(manifest)])
    valid = _status(checked.stdout, "VALIDSIG")
    if checked.returncode == 0 and valid:
        # VALIDSIG <signing key fpr> ... [<primary key fpr>]: name the key as `gpg --export` did.
        return SignatureCheck(signature, valid[9] if len(valid) > 9 else valid[0])
    said = _one_line(checked.stderr) or "no output"
    bad, missing = _status(checked.stdout, "BADSIG"), _status(checked.stdout, "NO_PUBKEY")
    if bad is not None:
        cause = f"{signature} is a BAD signature over {manifest}: policy.json changed after it was signed"
        fix = (
            f"sign the policy again (jetpolicy sign --policy {policy_dir} --key KEYID), "
            "or deploy the policy that was signed"
        )
    elif missing is not None:
        cause = f"{signature} was made by key {missing[0]}, which is not in {keyring}"
        fix = (
            "sign with a trusted key, or add that key's public key to the keyring "
            f"(gpg --export KEYID >> {keyring}; {_DOCS})"
        )
    else:
        cause = f"{signature} does not verify {manifest} against {keyring}"
        fix = f"sign the policy again with a key in the keyring ({_DOCS})"
    raise SigningError(f"{cause} (gpgv: {said})", fix)


def register(subparsers: Any) -> None:
    sign = subparsers.add_parser("sign", help="sign a policy's manifest (policy.json.sig) with a GnuPG key")
    sign.add_argument("--policy", type=Path, required=True, help="directory with policy.onnx and policy.json")
    sign.add_argument("--key", required=True, help="fingerprint (or key id, user id) of the signing key")
    sign.add_argument(
        "--gnupghome", type=Path, help="GnuPG home holding the key (default: $GNUPGHOME or ~/.gnupg)"
    )
    sign.set_defaults(handler=run_sign)
    verify = subparsers.add_parser(
        "verify-signature", help="check policy.json.sig against trusted public keys, as the robot does"
    )
    verify.add_argument(
        "--policy", type=Path, required=True, help="directory with policy.json and policy.json.sig"
    )
    verify.add_argument(
        "--keyring", type=Path, required=True, help="trusted public keys (gpg --export KEYID > FILE)"
    )
    verify.set_defaults(handler=run_verify)


def run_sign(args: argparse.Namespace) -> int:
    result = sign_policy(args.policy, args.key, args.gnupghome)
    print(f"signed {args.policy / MANIFEST_FILE} with key {result.fingerprint}: {result.signature}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    result = verify_policy_signature(args.policy, args.keyring)
    print(f"{result.signature}: good signature by {result.fingerprint} (keyring {args.keyring})")
    return 0
