"""Each fact about the robot has one home in module_utils/ (issue 16: one source of truth).

A second copy of a parser drifts (the nvpmodel parser once existed twice, with opposite tuple
orders); a second copy of a JetPack constant goes stale on the next JetPack.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from ansible.module_utils import jetpolicy_jetson
from moduletest import load_module, write_executable

REPO = Path(__file__).resolve().parents[2]
MODULE_DOC_BLOCKS = {"DOCUMENTATION", "EXAMPLES", "RETURN"}


def _code_strings(path: Path) -> list[str]:
    """String constants of a Python file, docstrings and module doc blocks left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skip.add(id(node.value))
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id in MODULE_DOC_BLOCKS for target in node.targets
        ):
            skip.add(id(node.value))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
    ]


def test_no_function_is_defined_in_two_module_utils() -> None:
    """parse_nvpmodel_query, parse_meminfo and friends are written once and imported elsewhere."""
    homes: dict[str, list[str]] = defaultdict(list)
    for path in sorted((REPO / "module_utils").glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                homes[node.name].append(path.name)
    assert {name: files for name, files in homes.items() if len(files) > 1} == {}


def test_trtexec_path_has_one_home() -> None:
    """The JetPack trtexec path is spelled once in code (TRTEXEC_PATH); roles never spell it."""
    literal = jetpolicy_jetson.TRTEXEC_PATH
    spelled = [
        str(path.relative_to(REPO))
        for folder in ("library", "module_utils")
        for path in sorted((REPO / folder).glob("*.py"))
        for text in _code_strings(path)
        if literal in text
    ]
    assert spelled == ["module_utils/jetpolicy_jetson.py"]
    in_roles = [str(p.relative_to(REPO)) for p in sorted((REPO / "roles").rglob("*.yml")) if literal in p.read_text()]
    assert in_roles == []


def test_trtexec_module_uses_the_shared_constants() -> None:
    """The trtexec module asks dpkg for the same TensorRT packages as jetson_facts, in the same order."""
    trtexec = load_module("trtexec")
    assert trtexec.TENSORRT_PACKAGES is jetpolicy_jetson.TENSORRT_PACKAGES
    assert trtexec.TRTEXEC_PATH is jetpolicy_jetson.TRTEXEC_PATH
    provision_plan = load_module("jetpolicy_provision_plan")
    assert provision_plan.TRTEXEC_PATH is jetpolicy_jetson.TRTEXEC_PATH


def test_nvpmodel_module_reads_id_and_name(run_module, tmp_path: Path, monkeypatch) -> None:
    """jetpolicy_nvpmodel reads the current mode with the facts module's parser: id 0, name MAXN."""
    write_executable(
        tmp_path / "nvpmodel",
        "#!/bin/sh\nprintf 'NVPM WARN: fan mode is not set to cool\\nNV Power Mode: MAXN\\n0\\n'\n",
    )
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    result = run_module(load_module("jetpolicy_nvpmodel"), {"mode": 0})
    assert "failed" not in result, result
    assert (result["previous_mode"], result["previous_name"], result["changed"]) == (0, "MAXN", False)
