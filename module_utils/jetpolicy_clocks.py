# Copyright: (c) 2026, jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Logic of the ``jetpolicy_clocks`` module: what ``jetson_clocks --show`` says about the clocks.

Runs on the robot's Python 3.8+. The format is L4T's ``jetson_clocks --show`` (recorded in
sim/l4t/recorded/jetson_clocks_show_orin_nx_r35.txt): a ``SOC family:`` line, ``Online CPUs:``,
then one line per CPU (``cpuN: Online=1 Governor=... MinFreq=... MaxFreq=... CurrentFreq=...``)
and one per other clock domain (GPU, EMC) with the same ``Key=value`` pairs.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["parse_clocks_show"]

_PAIR = re.compile(r"([A-Za-z]+)=(\S+)")
_FREQ_KEYS = {"MinFreq": "min_khz", "MaxFreq": "max_khz", "CurrentFreq": "current_khz"}


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _domain(fields: dict[str, str]) -> dict[str, Any]:
    entry: dict[str, Any] = {short: _number(fields[key]) for key, short in _FREQ_KEYS.items() if key in fields}
    if "Governor" in fields:
        entry["governor"] = fields["Governor"]
    if "Online" in fields:
        entry["online"] = fields["Online"] == "1"
    # jetson_clocks pins a domain by raising its minimum to its maximum.
    low, high = entry.get("min_khz"), entry.get("max_khz")
    entry["pinned"] = low is not None and high is not None and low == high
    return entry


def parse_clocks_show(text: str) -> dict[str, Any]:
    """The clock state ``jetson_clocks --show`` printed; raises ValueError when it names no clock."""
    result: dict[str, Any] = {"soc_family": None, "machine": None, "online_cpus": None, "domains": {},
                              "power_mode": None}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("SOC family:"):
            soc, _sep, machine = line[len("SOC family:"):].partition("Machine:")
            result["soc_family"] = soc.strip() or None
            result["machine"] = machine.strip() or None
        elif line.startswith("Online CPUs:"):
            result["online_cpus"] = line.split(":", 1)[1].strip() or None
        elif line.startswith("NV Power Mode:"):
            result["power_mode"] = line.split(":", 1)[1].strip() or None
        else:
            name, sep, rest = line.partition(":") if re.match(r"cpu\d+:", line) else line.partition(" ")
            fields = dict(_PAIR.findall(rest)) if sep else {}
            if any(key in fields for key in _FREQ_KEYS):
                result["domains"][name.strip()] = _domain(fields)
    domains = result["domains"]
    if not domains:
        raise ValueError("jetson_clocks --show named no clock (no line with MinFreq/MaxFreq/CurrentFreq)")
    online = [entry for entry in domains.values() if entry.get("online", True)]
    result["all_pinned"] = all(entry["pinned"] for entry in online)
    return result
