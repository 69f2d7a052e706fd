# Copyright: jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Ansible callback: give every playbook run a JETPOLICY_RUN_ID and render its rollout report."""

from __future__ import annotations

import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from ansible import constants as C
from ansible import context
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: jetpolicy_report
type: aggregate
short_description: Names the run and writes the jetpolicy rollout report when the playbook ends
description:
  - At start-up sets the environment variable C(JETPOLICY_RUN_ID) (a UTC timestamp such as
    C(20261123T171500Z) plus a short random suffix) unless it is already set, so the playbook's
    C(lookup('env', 'JETPOLICY_RUN_ID')) and this callback agree on the report directory. Sets
    C(JETPOLICY_CONTROLLER_PID) (this ansible-playbook process) and C(JETPOLICY_CONTROLLER_HOST) too, which
    the robots' rollout locks record as their holder.
  - When the playbook ends writes C(run.json) (playbook, limit, start and finish times, wall time,
    per-host play stats) into C(<repo>/reports/<run_id>/), for deploy.yml and rollback.yml runs and
    for any run whose report directory exists (the playbook or C(jetpolicy rollout) made it).
  - If the playbook wrote per-host records there (C(hosts/*.json)), renders report.json, report.md
    and latency.png with C(jetpolicy.controller.report.render_report) and prints the summary line.
    Records are read through C(jetpolicy.controller.record.HostRecord); one that does not match it
    fails its host in the report and is shown as a warning naming the file and the field.
  - Never fails the playbook; its own errors are shown as warnings.
requirements:
  - the jetpolicy Python package (with matplotlib) importable by the controller's Python
options:
  reports_dir:
    description:
      - Directory that holds one sub-directory per run. Defaults to C(reports/) next to the
        C(ansible.cfg) in use (the repository root), else next to the nearest C(ansible.cfg) at or
        above the playbook. The callback exports the value it chose as C(JETPOLICY_REPORTS_DIR), so
        the playbook can write host records to
        C({{ lookup('env', 'JETPOLICY_REPORTS_DIR') }}/{{ lookup('env', 'JETPOLICY_RUN_ID') }}/hosts/).
    type: path
    env:
      - name: JETPOLICY_REPORTS_DIR
"""

RUN_ID_ENV = "JETPOLICY_RUN_ID"
CONTROLLER_PID_ENV = "JETPOLICY_CONTROLLER_PID"
CONTROLLER_HOST_ENV = "JETPOLICY_CONTROLLER_HOST"
REPORTS_ENV = "JETPOLICY_REPORTS_DIR"
# Other playbooks (provision.yml, molecule's converge) get no report dir unless one of them wrote records.
ROLLOUT_PLAYBOOKS = ("deploy.yml", "rollback.yml")
STAT_KEYS = ("ok", "changed", "failures", "unreachable", "skipped", "rescued", "ignored")


def new_run_id(now: Optional[float] = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(2)}"


def repo_root(playbook_file: str) -> Path:
    """The nearest directory at or above the playbook that holds ansible.cfg (the repository root).

    The root deploy.yml only imports playbooks/deploy.yml; running the inner one directly must still
    write to <repo>/reports, not playbooks/reports.
    """
    start = Path(playbook_file).resolve().parent
    for directory in (start, *start.parents):
        if (directory / "ansible.cfg").is_file():
            return directory
    return start


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class CallbackModule(CallbackBase):  # type: ignore[misc]  # ansible-core ships no stubs
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "jetpolicy_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Set before any worker forks, so every task's lookup('env', ...) sees the same id.
        if not os.environ.get(RUN_ID_ENV):
            os.environ[RUN_ID_ENV] = new_run_id()
        self.run_id = os.environ[RUN_ID_ENV]
        # The robots' rollout locks name this process as their holder: a later run on this controller
        # that finds the process gone may take the lock over at once (roles/jetpolicy/tasks/lock.yml).
        os.environ[CONTROLLER_PID_ENV] = str(os.getpid())
        os.environ.setdefault(CONTROLLER_HOST_ENV, socket.gethostname())
        # playbook_dir inside playbooks/deploy.yml is playbooks/, not the repo: hand the playbook the
        # reports dir (next to the ansible.cfg in use) so both sides write to the same place.
        config_file = getattr(C, "CONFIG_FILE", None)
        if not os.environ.get(REPORTS_ENV) and config_file:
            os.environ[REPORTS_ENV] = str(Path(config_file).resolve().parent / "reports")
        self.started = time.time()
        self.playbooks: List[str] = []
        self.policy_dir: Optional[str] = None

    def _reports_dir(self) -> Path:
        override = os.environ.get(REPORTS_ENV)
        if override:
            return Path(override)
        base = repo_root(self.playbooks[0]) if self.playbooks else Path.cwd()
        return base / "reports"

    def v2_playbook_on_start(self, playbook: Any) -> None:
        try:
            self.playbooks.append(os.path.abspath(playbook._file_name))
        except Exception as exc:
            self._display.warning(f"jetpolicy_report: cannot record the playbook: {exc}")

    def v2_playbook_on_play_start(self, play: Any) -> None:
        if self.policy_dir is not None:
            return
        try:
            extra_vars = play.get_variable_manager().extra_vars
            value = extra_vars.get("jetpolicy_policy_dir")
            if value:
                self.policy_dir = str(value)
        except Exception:  # the policy dir only decorates the report header
            pass

    def v2_playbook_on_stats(self, stats: Any) -> None:
        try:
            self._finish(stats)
        except Exception as exc:  # a report problem must never fail (or hide) the rollout's result
            self._display.warning(f"jetpolicy_report: report not written: {type(exc).__name__}: {exc}")

    def _finish(self, stats: Any) -> None:
        import json

        finished = time.time()
        per_host: Dict[str, Dict[str, int]] = {}
        for host in sorted(stats.processed):
            summary = stats.summarize(host)
            per_host[host] = {key: int(summary.get(key, 0)) for key in STAT_KEYS}
        run = {
            "run_id": self.run_id,
            "playbook": self.playbooks[0] if len(self.playbooks) == 1 else self.playbooks,
            "limit": context.CLIARGS.get("subset"),
            "policy_dir": self.policy_dir,
            "started_at": _iso(self.started),
            "finished_at": _iso(finished),
            "wall_time_s": round(finished - self.started, 3),
            "stats": per_host,
        }
        report_dir = self._reports_dir() / self.run_id
        if not report_dir.is_dir() and not any(Path(p).name in ROLLOUT_PLAYBOOKS for p in self.playbooks):
            return
        report_dir.mkdir(parents=True, exist_ok=True)
        tmp = report_dir / ".run.json.tmp"
        tmp.write_text(json.dumps(run, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(report_dir / "run.json")
        if not (report_dir / "hosts").is_dir():
            self._display.display(
                f"jetpolicy report: no host records, run stats in {report_dir / 'run.json'}"
            )
            return
        from jetpolicy.controller.report import render_report

        summary = render_report(report_dir, run)
        # A record off the HostRecord contract fails its host in the report; say which file and field.
        for problem in summary.problems:
            self._display.warning(f"jetpolicy_report: {problem}")
        color = "green" if summary.ok else "red"
        self._display.display(f"jetpolicy report: {summary.markdown} — {summary.line()}", color=color)
