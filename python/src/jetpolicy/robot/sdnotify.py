"""systemd notification (sd_notify) without libsystemd.

systemd passes NOTIFY_SOCKET (an AF_UNIX datagram address; a leading "@" means the abstract
namespace) to Type=notify services, and WATCHDOG_USEC when WatchdogSec= is set. With no
NOTIFY_SOCKET (a shell, a test) every call is a no-op, so the runner needs no special mode.
"""

from __future__ import annotations

import os
import socket
from typing import Mapping, Optional

__all__ = ["SdNotifier"]


class SdNotifier:
    """Sends READY=1 / STATUS= / WATCHDOG=1 / STOPPING=1 to systemd."""

    def __init__(self, environ: Optional[Mapping[str, str]] = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self.address: Optional[str] = None
        if raw:
            self.address = "\0" + raw[1:] if raw.startswith("@") else raw
        self.watchdog_usec = 0
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process the watchdog is meant for; a child must not ping for it.
        if usec.isdigit() and (not pid or pid == str(os.getpid())):
            self.watchdog_usec = int(usec)
        self._sock: Optional[socket.socket] = None
        self.send_errors = 0
        self.last_error = ""

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float:
        """How often to ping: half the watchdog timeout (systemd's recommendation), 0 when off."""
        return self.watchdog_usec / 2e6 if self.enabled else 0.0

    def notify(self, message: str) -> bool:
        """Send one raw notification; failures are counted, not raised (systemd may be restarting)."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto(message.encode("utf-8"), self.address)
        except OSError as exc:
            self.send_errors += 1
            self.last_error = f"{exc.strerror} (errno {exc.errno})"
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1\nSTATUS=" + status if status else "READY=1")

    def status(self, text: str) -> bool:
        return self.notify("STATUS=" + text.replace("\n", " "))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1\nSTATUS=" + status if status else "STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
