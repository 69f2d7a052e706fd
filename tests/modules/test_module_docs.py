"""Sanity-style hygiene: every module in library/ documents exactly its argument_spec."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from ansible.module_utils import basic
from moduletest import LIBRARY, load_module

MODULES = sorted(p.stem for p in LIBRARY.glob("*.py"))


class _Captured(Exception):
    pass


def argument_spec(name: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    captured: dict[str, Any] = {}

    def fake_init(self: Any, argument_spec: dict[str, Any], **kwargs: Any) -> None:
        captured.update(argument_spec=argument_spec, **kwargs)
        raise _Captured()

    monkeypatch.setattr(basic.AnsibleModule, "__init__", fake_init)
    with pytest.raises(_Captured):
        load_module(name).main()
    return captured


def test_modules_found() -> None:
    """The three jetpolicy modules are present."""
    assert {"jetson_facts", "trtexec", "policy_bench"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docs_parse(name: str) -> None:
    """DOCUMENTATION, EXAMPLES and RETURN are YAML; check_mode attribute is declared."""
    module = load_module(name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc["module"] == name
    assert doc["short_description"] and doc["description"]
    assert doc["attributes"]["check_mode"]["support"] in ("full", "partial")
    examples = yaml.safe_load(module.EXAMPLES)
    assert isinstance(examples, list) and examples
    assert isinstance(yaml.safe_load(module.RETURN), dict)


@pytest.mark.parametrize("name", MODULES)
def test_options_match_argument_spec(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Names, types, defaults, choices, required and elements agree with the argument_spec."""
    options = yaml.safe_load(load_module(name).DOCUMENTATION).get("options") or {}
    captured = argument_spec(name, monkeypatch)
    spec = captured["argument_spec"]
    assert captured.get("supports_check_mode") is True
    assert set(options) == set(spec)
    for option, doc in options.items():
        arg = spec[option]
        assert doc.get("type", "str") == arg.get("type", "str"), option
        assert doc.get("default") == arg.get("default"), option
        assert doc.get("choices") == arg.get("choices"), option
        assert bool(doc.get("required", False)) == bool(arg.get("required", False)), option
        assert doc.get("elements") == arg.get("elements"), option
        assert doc.get("description"), option
