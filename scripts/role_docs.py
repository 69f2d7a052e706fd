#!/usr/bin/env python3
"""Write each role's README variable table from its meta/argument_specs.yml, so they cannot drift.

    python3 scripts/role_docs.py          # rewrite the tables
    python3 scripts/role_docs.py --check  # exit 1 when a README is out of date (used by the tests)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List

import yaml

REPO = Path(__file__).resolve().parent.parent
BEGIN = "<!-- BEGIN role variables (scripts/role_docs.py) -->"
END = "<!-- END role variables -->"


def _cell(value: Any) -> str:
    text = " ".join(value) if isinstance(value, list) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def variable_table(specs: Dict[str, Any]) -> str:
    lines: List[str] = []
    for entry, spec in specs["argument_specs"].items():
        lines += [f"### Entry point `{entry}`: {spec.get('short_description', '')}", ""]
        options = spec.get("options") or {}
        if not options:
            lines += ["No variables.", ""]
            continue
        lines += ["| variable | type | default | description |", "|---|---|---|---|"]
        for name, opt in options.items():
            default = opt.get("default", "required" if opt.get("required") else "")
            choices = f" Choices: {', '.join(map(str, opt['choices']))}." if opt.get("choices") else ""
            lines.append(
                f"| `{name}` | {opt.get('type', 'str')} | `{_cell(default)}` | {_cell(opt.get('description', ''))}{choices} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render(role: Path) -> str:
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    readme = role / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.exists() else f"# {role.name}\n\n## Role Variables\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{variable_table(specs)}{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    for role in sorted((REPO / "roles").iterdir()):
        readme = role / "README.md"
        # Roles whose README keeps a hand-written variable list opt out by having no markers.
        if not (role / "meta" / "argument_specs.yml").exists() or (
            readme.exists() and BEGIN not in readme.read_text(encoding="utf-8")
        ):
            continue
        wanted = render(role)
        if readme.exists() and readme.read_text(encoding="utf-8") == wanted:
            continue
        stale.append(role.name)
        if not args.check:
            readme.write_text(wanted, encoding="utf-8")
    if args.check and stale:
        print(f"README variable tables out of date: {', '.join(stale)}; run python3 scripts/role_docs.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
