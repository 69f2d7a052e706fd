"""Run a command under the system-call filter and address families a rendered unit declares.

    python seccomp_exec.py UNIT_FILE -- COMMAND [ARG...]

What systemd would install for the unit's ``SystemCallFilter=``, ``SystemCallArchitectures=native``
and ``RestrictAddressFamilies=`` lines, built with libseccomp (through ctypes, as systemd itself
uses it) and loaded before ``execve``. Stricter than the unit in one way: a call outside the
unit's first list (``@system-service``) raises SIGSYS here (the process dies and the test sees it),
where the unit's ``SystemCallErrorNumber=EPERM`` would only fail the call. A call the unit takes
out again (``~@privileged``) fails with EPERM, as in the unit: a root-only path (SQLite chowns its
journal when euid is 0, and these tests run as root) must not fail a runner that, as the service
user, never takes it. ``socket()`` with a family the unit does not allow fails with EAFNOSUPPORT,
as systemd answers it. The groups are expanded by the local
``systemd-analyze syscall-filter``, so the check follows this machine's systemd tables.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
SCMP_CMP_GT = 6
AF_MAX = 64  # above every family Linux defines (46 in 6.x)


def scmp_act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def expand(group: str, seen: set[str] | None = None) -> set[str]:
    """The system calls a filter group names, nested groups included."""
    seen = set() if seen is None else seen
    seen.add(group)
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", group], capture_output=True, text=True, check=True
    ).stdout
    calls: set[str] = set()
    for raw in out.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line == group:
            continue
        if line.startswith("@"):
            if line not in seen:
                calls |= expand(line, seen)
        else:
            calls.add(line)
    return calls


def unit_values(unit: Path, key: str) -> list[str]:
    prefix = key + "="
    return [
        line[len(prefix):].strip()
        for line in unit.read_text(encoding="utf-8").splitlines()
        if line.startswith(prefix)
    ]


def allowed_syscalls(unit: Path) -> tuple[set[str], set[str]]:
    """What the unit's SystemCallFilter= lines allow (an allow-list first), and what their ~ lines
    take out of it again."""
    allowed: set[str] = set()
    removed: set[str] = set()
    for value in unit_values(unit, "SystemCallFilter"):
        deny = value.startswith("~")
        names: set[str] = set()
        for item in value.lstrip("~").split():
            names |= expand(item) if item.startswith("@") else {item}
        if deny:
            removed |= names & allowed
            allowed -= names
        else:
            allowed |= names
            removed -= names
    if not allowed:
        raise SystemExit(f"{unit} has no SystemCallFilter= allow-list")
    return allowed, removed


def allowed_families(unit: Path) -> set[int]:
    families: set[int] = set()
    for value in unit_values(unit, "RestrictAddressFamilies"):
        families |= {int(getattr(socket, name)) for name in value.split()}
    return families


def load_filter(syscalls: set[str], removed: set[str], families: set[int]) -> None:
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp)
    ]  # fmt: skip
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(SCMP_ACT_TRAP)
    if not ctx:
        raise SystemExit("seccomp_init failed")

    def add(action: int, number: int, *cmps: ArgCmp) -> None:
        array = (ArgCmp * max(len(cmps), 1))(*cmps)
        rc = lib.seccomp_rule_add_array(ctx, action, number, len(cmps), array)
        if rc < 0:
            raise SystemExit(f"seccomp_rule_add({number}) failed: {os.strerror(-rc)}")

    for name in sorted(syscalls):
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:  # not a call on this architecture (e.g. the 32-bit time64 variants)
            continue
        if name == "socket" and families:
            for family in range(AF_MAX):
                action = SCMP_ACT_ALLOW if family in families else scmp_act_errno(errno.EAFNOSUPPORT)
                add(action, number, ArgCmp(0, SCMP_CMP_EQ, family, 0))
            add(scmp_act_errno(errno.EAFNOSUPPORT), number, ArgCmp(0, SCMP_CMP_GT, AF_MAX - 1, 0))
            continue
        add(SCMP_ACT_ALLOW, number)
    for name in sorted(removed):
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number >= 0:
            add(scmp_act_errno(errno.EPERM), number)
    rc = lib.seccomp_load(ctx)
    if rc < 0:
        raise SystemExit(f"seccomp_load failed: {os.strerror(-rc)}")


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit(__doc__)
    unit = Path(argv[0])
    allowed, removed = allowed_syscalls(unit)
    load_filter(allowed, removed, allowed_families(unit))
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
