"""A run's failure policy as the deploy applied it: `reports/<run>/failure-policy.json`.

deploy.yml weighs the robots a run lost (rolled back by a gate, failed or unreachable during their
switch) against `jetpolicy_failure_budget_percent` of the robots it targets, across every batch, and
with `jetpolicy_on_failure: rollback_all` returns the robots it promoted once the budget is spent.
roles/policy_gate/tasks/failure_policy.yml writes what it decided; the report shows it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from jetpolicy.controller.record import RecordError, parse_versioned

__all__ = ["FAILURE_POLICY_FILE", "FAILURE_POLICY_SCHEMA", "FailurePolicy", "load_failure_policy"]

FAILURE_POLICY_FILE = "failure-policy.json"
FAILURE_POLICY_SCHEMA = "failure-policy"
FAILURE_POLICY_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class FailurePolicy:
    budget_percent: float
    budget_robots: int
    targets: int
    on_failure: str
    spent: bool
    failed_robots: List[str] = field(default_factory=list)
    rolled_back_with_run: List[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Any, source: str) -> FailurePolicy:
        return parse_versioned(
            data, source, FAILURE_POLICY_SCHEMA, FAILURE_POLICY_SCHEMA_VERSION,
            lambda: cls(
                budget_percent=float(data["budget_percent"]),
                budget_robots=int(data["budget_robots"]),
                targets=int(data["targets"]),
                on_failure=str(data["on_failure"]),
                spent=bool(data["spent"]),
                failed_robots=[str(h) for h in data["failed_robots"]],
                rolled_back_with_run=[str(h) for h in data["rolled_back_with_run"]],
            ),
        )  # fmt: skip

    def to_json(self) -> Dict[str, Any]:
        return {
            "schema_version": FAILURE_POLICY_SCHEMA_VERSION,
            "budget_percent": self.budget_percent,
            "budget_robots": self.budget_robots,
            "targets": self.targets,
            "on_failure": self.on_failure,
            "spent": self.spent,
            "failed_robots": list(self.failed_robots),
            "rolled_back_with_run": list(self.rolled_back_with_run),
        }

    def budget_text(self) -> str:
        """`budget 1 of 3 robots (34%)`."""
        return f"failure budget {self.budget_robots} of {self.targets} robot(s) ({self.budget_percent:g}%)"

    def summary(self) -> str:
        """One clause for the report's reason and header."""
        lost = len(self.failed_robots)
        if self.spent:
            text = f"{lost} robot(s) lost, more than the {self.budget_text()}: the rollout stopped"
            if self.on_failure == "rollback_all":
                back = ", ".join(self.rolled_back_with_run) or "none"
                text += f"; rollback_all returned the robots it had promoted: {back}"
            return text
        if lost:
            return f"{lost} robot(s) lost, within the {self.budget_text()}: the others were switched"
        return f"no robot lost ({self.budget_text()}, on failure: {self.on_failure})"


def load_failure_policy(report_dir: Path) -> Optional[FailurePolicy]:
    """The run's failure policy, or None for a run that wrote none (a rollback, --tags stage)."""
    path = Path(report_dir) / FAILURE_POLICY_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecordError(str(path), "", f"unreadable: {exc}") from exc
    return FailurePolicy.from_json(data, str(path))
