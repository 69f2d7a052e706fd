"""`jetpolicy safe-action`: send the policy's safe action once, for a runner that is not running.

systemd starts it (jetpolicy-safe-stop.service, the runner unit's `OnFailure=`) when the runner has
used up its restarts: the robot's driver then holds the manifest's stated safe action, flagged as
such, instead of the last inference result. It reads the same runner.json the service runs with,
so the action goes to the configured `action_to` of the deployment that failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from jetpolicy.common.errors import JetpolicyError
from jetpolicy.common.manifest import load_manifest
from jetpolicy.robot.config import load_config
from jetpolicy.robot.policy import MANIFEST_FILE, safe_action_arrays
from jetpolicy.robot.transport import ActionPublisher, TransportError, open_socket, parse_address

__all__ = ["register", "send_safe_action"]


def send_safe_action(config_path: Path, reason: str) -> str:
    """Send one safe-action packet to the configured `action_to`; returns what was done (logged).

    UDP: the packet leaves from the runner's own `bind` address where it is free (the driver may
    accept actions from the runner's address only), else from an unbound socket. Unix: always
    unbound, since binding would unlink the socket file of a runner that is still there.
    """
    config = load_config(config_path)
    release_dir = config.release_dir.resolve()
    manifest = load_manifest(release_dir / MANIFEST_FILE)
    transport = config.transport
    if transport.kind not in ("udp", "unix"):
        return f"transport {transport.kind} has no action receiver: nothing sent ({reason})"
    action_to = parse_address(transport.kind, transport.action_to)
    note = ""
    try:
        bind = parse_address(transport.kind, transport.bind) if transport.kind == "udp" else None
        sock = open_socket(transport.kind, bind)
    except TransportError as exc:
        sock = open_socket(transport.kind, None)
        note = f"; sent from an unbound socket ({exc.cause})"
    try:
        publisher = ActionPublisher(sock, action_to, manifest.action_outputs)
        if not publisher.publish(safe_action_arrays(manifest), 0, safe=True):
            raise JetpolicyError(
                f"safe action of {manifest.name} ({release_dir.name}) could not be sent to "
                f"{transport.kind} {transport.action_to}: {publisher.last_error}",
                "check that the robot's driver listens there; the runner is stopped",
            )
    finally:
        sock.close()
    return (
        f"sent the safe action of {manifest.name} (release {release_dir.name}) to {transport.kind} "
        f"{transport.action_to}{note}: {reason}"
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("safe-action", help="send the manifest's safe action once")
    parser.add_argument("--config", type=Path, default=Path("/opt/jetpolicy/runner.json"), help="runner.json")
    parser.add_argument("--reason", default="requested", help="why; logged with what was sent")
    parser.set_defaults(handler=run_safe_action)


def run_safe_action(args: argparse.Namespace) -> int:
    # stderr: the journal of the unit that ran it keeps the line.
    print(f"jetpolicy safe-action: {send_safe_action(args.config, args.reason)}", file=sys.stderr)
    return 0
