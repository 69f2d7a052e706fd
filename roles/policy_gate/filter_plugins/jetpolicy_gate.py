# Copyright: jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Ansible filter `jetpolicy_gate`: the policy_gate role's verdict, decided by jetpolicy.controller.gate.

Filters run in the controller's Python, so the gate is judged on the controller by the package the
controller venv has installed (`.venv/bin/pip install -e python/`); this file only converts the
role's registered results and settings into the function's types and its verdict back into data.
It sits in the role (roles/policy_gate/filter_plugins/) so that Ansible finds it wherever the role
runs (ansible.cfg, `jetpolicy rollout`, Molecule) without a plugin path of its own.

    {{ {'health': policy_service_health, 'bench': policy_gate_bench, 'parity': policy_gate_parity_run}
       | jetpolicy_gate(settings, host=inventory_hostname) }}

returns `{"passed": bool, "gates": {"health": {...}, "timing": {...}, "parity": {...}},
"failures": ["<gate>: <reasons>", ...], "message": "<host> failed the gate(s): ..."}`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

SETTING_KEYS = (
    "control_rate_hz", "latency_p99_fraction", "max_deadline_miss_rate",
    "health_enabled", "timing_enabled", "parity_enabled",
)  # fmt: skip
TRUE_WORDS, FALSE_WORDS = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise AnsibleFilterError(f"jetpolicy_gate: setting {name} is {value!r}, not a boolean")


def _float(name: str, value: Any) -> float:
    try:
        if isinstance(value, bool):
            raise TypeError("a boolean")
        return float(value)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"jetpolicy_gate: setting {name} is {value!r}, not a number") from exc


def jetpolicy_gate(
    runs: Mapping[str, Any], settings: Mapping[str, Any], host: str = "this host"
) -> dict[str, Any]:
    """Judge the registered `health`, `bench` and `parity` results against `settings`."""
    try:
        from jetpolicy.common.errors import JetpolicyError
        from jetpolicy.controller.gate import BenchRun, CommandRun, GateSettings, judge_gates
    except ImportError as exc:
        raise AnsibleFilterError(
            f"jetpolicy_gate: cannot import jetpolicy.controller.gate ({exc}); run Ansible from the "
            "controller venv that has the package: .venv/bin/pip install -e python/"
        ) from exc
    if not isinstance(runs, Mapping) or not isinstance(settings, Mapping):
        raise AnsibleFilterError(
            "jetpolicy_gate: expects a dict of registered results, then a dict of settings"
        )
    unknown = sorted(set(runs) - {"health", "bench", "parity"}) + sorted(set(settings) - set(SETTING_KEYS))
    if unknown:
        raise AnsibleFilterError(f"jetpolicy_gate: unknown key {unknown[0]!r}")
    missing = [key for key in SETTING_KEYS if key not in settings]
    if missing:
        raise AnsibleFilterError(f"jetpolicy_gate: setting {missing[0]} is missing")
    try:
        gate_settings = GateSettings(
            control_rate_hz=_float("control_rate_hz", settings["control_rate_hz"]),
            latency_p99_fraction=_float("latency_p99_fraction", settings["latency_p99_fraction"]),
            max_deadline_miss_rate=_float("max_deadline_miss_rate", settings["max_deadline_miss_rate"]),
            health_enabled=_flag("health_enabled", settings["health_enabled"]),
            timing_enabled=_flag("timing_enabled", settings["timing_enabled"]),
            parity_enabled=_flag("parity_enabled", settings["parity_enabled"]),
        )
    except JetpolicyError as exc:
        raise AnsibleFilterError(f"jetpolicy_gate: {exc}") from exc
    verdict = judge_gates(
        CommandRun.from_registered(runs.get("health")),
        BenchRun.from_registered(runs.get("bench")),
        CommandRun.from_registered(runs.get("parity")),
        gate_settings,
    )
    return verdict.to_json(str(host))


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"jetpolicy_gate": jetpolicy_gate}
