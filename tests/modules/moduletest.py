"""Shared helpers for the module unit tests (imported by name; conftest.py registers the fixture).

Loads modules from the ``library`` folder ansible.cfg names (tests/ansible_paths.py; the
``module_utils`` folder is made importable by tests/conftest.py) and runs them with ansible-core
2.19's ``patch_module_args``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from ansible_paths import LIBRARY, REPO

# The recorded trtexec logs, in the repository so the tests need nothing beside it (README there
# names each log's source).
FIXTURES = REPO / "tests" / "fixtures" / "trtexec"
HERE = Path(__file__).resolve().parent


class AnsibleExitJson(Exception):
    """exit_json was called."""


class AnsibleFailJson(Exception):
    """fail_json was called."""


def load_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"library_{name}", LIBRARY / (f"{name}.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_module(monkeypatch: pytest.MonkeyPatch):
    """run_module(module, args, check_mode=False) -> (failed, result)."""

    def exit_json(self: basic.AnsibleModule, **kwargs: Any) -> None:
        kwargs.setdefault("changed", False)
        raise AnsibleExitJson(kwargs)

    def fail_json(self: basic.AnsibleModule, msg: str = "", **kwargs: Any) -> None:
        kwargs["failed"] = True
        kwargs["msg"] = msg
        raise AnsibleFailJson(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)

    def run(module: ModuleType, args: dict[str, Any], check_mode: bool = False) -> dict[str, Any]:
        args = dict(args)
        if check_mode:
            args["_ansible_check_mode"] = True
        with patch_module_args(args):
            try:
                module.main()
            except AnsibleExitJson as exc:
                return exc.args[0]
            except AnsibleFailJson as exc:
                return exc.args[0]
        raise AssertionError("module returned without exit_json/fail_json")

    return run


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def write_executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def json_dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data))


__all__ = [
    "FIXTURES",
    "HERE",
    "AnsibleExitJson",
    "AnsibleFailJson",
    "fixture_text",
    "json_dump",
    "load_module",
    "sys",
    "write_executable",
]
