"""`jetpolicy rollout`: run deploy.yml through ansible-runner, show per-host progress, gate on the report.

Exit 0 only when the playbook succeeded and every targeted host ended promoted (or unchanged and
healthy); 3 when nothing failed but busy robots were deferred (left on their release); otherwise 1,
with the reason on one stderr line, so CI can gate on it. ansible_runner is
imported inside `rollout()`: this package is also installed on robots, which do not have it.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from jetpolicy.common.errors import JetpolicyError
from jetpolicy.controller.report import ReportSummary, read_summary, render_report

__all__ = [
    "RolloutResult",
    "find_project_dir",
    "judge",
    "register",
    "rollout",
]

PLAYBOOK = "deploy.yml"
# Exit code of a rollout that failed nowhere but left busy robots on their release (deferred).
DEFERRED_EXIT = 3
# Verdicts that count as a finished rollout for a host; "unchanged" is a host already on the target.
DONE_VERDICTS = ("promoted", "unchanged")
# Task names with these words are worth a progress line even when they just succeed.
IMPORTANT_WORDS = (
    "validate", "stage", "switch", "health", "gate", "timing", "bench", "parity", "rollback",
    "roll back", "promote", "record",
)  # fmt: skip
STATS_KEYS = {
    "ok": "ok", "changed": "changed", "failures": "failures", "dark": "unreachable",
    "skipped": "skipped", "rescued": "rescued", "ignored": "ignored",
}  # fmt: skip


@dataclass
class RolloutResult:
    exit_code: int
    reason: str
    run_id: str
    report_dir: Path
    rc: int
    status: str
    summary: Optional[ReportSummary] = None
    failures: List[str] = field(default_factory=list)


def find_project_dir(start: Path) -> Path:
    """The nearest directory at or above `start` holding deploy.yml."""
    start = start.resolve()
    for directory in (start, *start.parents):
        if (directory / PLAYBOOK).is_file():
            return directory
    raise JetpolicyError(
        f"no {PLAYBOOK} in {start} or any parent directory",
        "run from the jetpolicy repo or pass --project-dir",
    )


def new_run_id() -> str:
    import secrets

    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(2)}"


def _one_line(text: Any, limit: int = 240) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _result_message(res: Mapping[str, Any]) -> str:
    for key in ("msg", "reason", "stderr", "module_stderr", "stdout"):
        value = res.get(key)
        if value:
            return _one_line(value)
    return f"rc {res['rc']}" if "rc" in res else "no message"


class Progress:
    """ansible-runner event handler: one line per host per important task, every failure with its message."""

    def __init__(self, emit: Optional[Callable[[str], None]]) -> None:
        self.emit = emit
        self.failures: List[str] = []

    def _say(self, line: str) -> None:
        if self.emit is not None:
            self.emit(line)

    def __call__(self, event: Mapping[str, Any]) -> bool:
        kind = str(event.get("event", ""))
        data: Mapping[str, Any] = event.get("event_data") or {}
        if kind == "playbook_on_play_start":
            self._say(f"== {data.get('play') or data.get('name') or 'play'}")
            return True
        if kind not in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            return True
        host = data.get("host") or "?"
        task = _one_line(data.get("task") or data.get("task_action") or "task", 80)
        res: Mapping[str, Any] = data.get("res") or {}
        if kind == "runner_on_unreachable":
            line = f"[{host}] {task}: unreachable: {_result_message(res)}"
            self.failures.append(line)
            self._say(line)
        elif kind == "runner_on_failed":
            ignored = bool(data.get("ignore_errors"))
            line = f"[{host}] {task}: failed{' (ignored)' if ignored else ''}: {_result_message(res)}"
            if not ignored:
                self.failures.append(line)
            self._say(line)
        elif res.get("changed") or any(word in task.lower() for word in IMPORTANT_WORDS):
            self._say(f"[{host}] {task}: {'changed' if res.get('changed') else 'ok'}")
        return True


def _host_key_checking(config: Path) -> str:
    # ansible-runner turns host key checking off unless the environment says otherwise; our
    # ansible.cfg turns it on on purpose (a changed robot key is an incident), so carry it over.
    if "ANSIBLE_HOST_KEY_CHECKING" in os.environ:
        return os.environ["ANSIBLE_HOST_KEY_CHECKING"]
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(config, encoding="utf-8")
        return str(parser.getboolean("defaults", "host_key_checking", fallback=True))
    except (configparser.Error, ValueError):
        return "True"


def _envvars(project_dir: Path, run_id: str, reports_root: Path) -> Dict[str, str]:
    env = {
        "JETPOLICY_RUN_ID": run_id,
        "JETPOLICY_REPORTS_DIR": str(reports_root),
        "ANSIBLE_NOCOLOR": "1",  # ansible.log in the report is read in CI logs and browsers
        # The ansible-playbook (and the callback's jetpolicy) of this interpreter's environment.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    config = project_dir / "ansible.cfg"
    if config.is_file():
        # Relative paths in ansible.cfg (inventory, roles_path, library) resolve against its directory.
        env["ANSIBLE_CONFIG"] = str(config)
        env["ANSIBLE_HOST_KEY_CHECKING"] = _host_key_checking(config)
    callbacks = project_dir / "callback_plugins"
    if callbacks.is_dir():
        # ansible-runner sets ANSIBLE_CALLBACK_PLUGINS, which overrides ansible.cfg's callback_plugins.
        existing = os.environ.get("ANSIBLE_CALLBACK_PLUGINS", "")
        env["ANSIBLE_CALLBACK_PLUGINS"] = os.pathsep.join(filter(None, [str(callbacks), existing]))
    return env


def _stats_by_host(stats: Optional[Mapping[str, Mapping[str, int]]]) -> Dict[str, Dict[str, int]]:
    per_host: Dict[str, Dict[str, int]] = {}
    for runner_key, key in STATS_KEYS.items():
        for host, count in ((stats or {}).get(runner_key) or {}).items():
            per_host.setdefault(host, {k: 0 for k in STATS_KEYS.values()})[key] = int(count)
    for host in (stats or {}).get("processed") or {}:
        per_host.setdefault(host, {k: 0 for k in STATS_KEYS.values()})
    return per_host


def _summary_from_json(report_dir: Path) -> Optional[ReportSummary]:
    """The callback's report.json, its host records checked by HostRecord; None to render afresh."""
    try:
        return read_summary(report_dir)
    except JetpolicyError:
        return None


def judge(rc: int, summary: Optional[ReportSummary], failures: Sequence[str] = ()) -> Tuple[int, str]:
    """(exit code, one-line reason) of a rollout."""
    if summary is not None and not summary.ok:
        if rc != 0 and failures and failures[0] not in summary.reason:
            return 1, _one_line(f"{summary.reason}; first failure: {failures[0]}", 400)
        return 1, summary.reason
    if rc != 0:
        detail = failures[0] if failures else "see ansible.log in the report directory"
        return 1, _one_line(f"ansible-playbook failed (rc {rc}): {detail}")
    if summary is None:
        return 1, "the playbook wrote no host records and no play stats"
    if not summary.hosts:
        return 1, "no host was targeted: check --limit and the inventory"
    unfinished = [(h, v) for h, v in summary.hosts.items() if v not in DONE_VERDICTS]
    if unfinished and all(v == "deferred" for _h, v in unfinished):
        # Nothing failed, but the rollout is not finished: CI can tell this apart from a failure.
        return DEFERRED_EXIT, f"deferred, nothing failed: {summary.reason}"
    if unfinished:
        listed = ", ".join(f"{h} {v.replace('_', ' ')}" for h, v in unfinished[:4])
        more = f" (+{len(unfinished) - 4} more)" if len(unfinished) > 4 else ""
        return 1, f"not every host was promoted: {listed}{more}"
    return 0, summary.reason


def _playbook_error(stdout: str) -> Optional[str]:
    lines = [line for line in stdout.splitlines() if "ERROR" in line]
    return _one_line(lines[-1]) if lines else None


def rollout(
    project_dir: Path,
    limit: Optional[str] = None,
    inventory: Optional[Path] = None,
    extravars: Optional[Mapping[str, Any]] = None,
    policy_dir: Optional[Path] = None,
    *,
    extra_args: Sequence[str] = (),
    progress: Optional[Callable[[str], None]] = None,
    run_id: Optional[str] = None,
) -> RolloutResult:
    """Run `<project_dir>/deploy.yml` and judge it.

    `extra_args` go to ansible-playbook verbatim (`["-e", "k=v"]`), with ansible's own -e semantics.
    """
    try:
        import ansible_runner
    except ImportError as exc:
        raise JetpolicyError(
            "ansible-runner is not installed", "pip install 'jetpolicy[controller]' on the controller"
        ) from exc
    project_dir = Path(project_dir).resolve()
    if not (project_dir / PLAYBOOK).is_file():
        raise JetpolicyError(f"no {PLAYBOOK} in {project_dir}", "pass the repository root as --project-dir")
    variables: Dict[str, Any] = dict(extravars or {})
    if policy_dir is not None:
        policy = Path(policy_dir).resolve()
        if not policy.is_dir():
            raise JetpolicyError(f"policy directory {policy} does not exist", "pass the dir with policy.onnx")
        variables["jetpolicy_policy_dir"] = str(policy)
    inventory_arg = None
    if inventory is not None:
        inventory_arg = str(Path(inventory).resolve())  # the playbook runs with cwd = project_dir
        if not Path(inventory_arg).exists():
            raise JetpolicyError(f"inventory {inventory_arg} does not exist", "pass an existing --inventory")
    run_id = run_id or os.environ.get("JETPOLICY_RUN_ID") or new_run_id()
    reports_root = Path(os.environ.get("JETPOLICY_REPORTS_DIR") or project_dir / "reports").resolve()
    report_dir = reports_root / run_id
    handler = Progress(progress)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="jetpolicy-runner-") as private_data_dir:
        kwargs: Dict[str, Any] = {}
        if extra_args:
            kwargs["cmdline"] = " ".join(shlex.quote(arg) for arg in extra_args)
        runner = ansible_runner.run(
            private_data_dir=private_data_dir,
            project_dir=str(project_dir),
            playbook=PLAYBOOK,
            inventory=inventory_arg,
            limit=limit,
            extravars=variables or None,
            envvars=_envvars(project_dir, run_id, reports_root),
            ident=run_id,
            event_handler=handler,
            quiet=True,
            **kwargs,
        )
        rc = int(runner.rc if runner.rc is not None else 1)
        status = str(runner.status)
        stdout_file = Path(private_data_dir) / "artifacts" / run_id / "stdout"
        stdout = stdout_file.read_text(encoding="utf-8", errors="replace") if stdout_file.is_file() else ""
        stats = _stats_by_host(runner.stats)
    finished = time.time()
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "ansible.log").write_text(stdout, encoding="utf-8")
    if not (report_dir / "run.json").is_file():  # the jetpolicy_report callback is not enabled
        run = {
            "run_id": run_id,
            "playbook": str(project_dir / PLAYBOOK),
            "limit": limit,
            "policy_dir": variables.get("jetpolicy_policy_dir"),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(finished)),
            "wall_time_s": round(finished - started, 3),
            "stats": stats,
        }
        (report_dir / "run.json").write_text(
            json.dumps(run, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    summary = _summary_from_json(report_dir) if (report_dir / "report.md").is_file() else None
    if summary is None and ((report_dir / "hosts").is_dir() or stats):
        summary = render_report(report_dir)
    failures = list(handler.failures)
    if rc != 0 and not failures:
        error = _playbook_error(stdout)
        if error:
            failures.append(error)
    code, reason = judge(rc, summary, failures)
    return RolloutResult(code, reason, run_id, report_dir, rc, status, summary, failures)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "rollout",
        help="roll a policy out with deploy.yml (ansible-runner); exit 1 unless every host promoted",
    )
    parser.add_argument("--limit", "-l", default=None, help="host pattern, e.g. orin_robots or canary_group")
    parser.add_argument("--inventory", "-i", type=Path, default=None, help="default: ansible.cfg's inventory")
    parser.add_argument("--policy", type=Path, default=None, help="policy dir (sets jetpolicy_policy_dir)")
    parser.add_argument(
        "-e", "--extra-vars", action="append", default=[], metavar="VARS",
        help="passed to ansible-playbook as -e (key=value, JSON or @file); repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--project-dir", type=Path, default=None, help="repo with deploy.yml (default: found from the cwd)"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no per-host progress lines")
    parser.add_argument(
        "--slices", type=int, default=1,
        help="cut the targeted hosts into N slices, each its own deploy.yml run: the canary's slice "
             "alone first, then the others side by side (docs/fleet-scale.md)",
    )  # fmt: skip
    parser.add_argument(
        "--slice-parallel", type=int, default=None, help="at most this many slices at once after the first"
    )
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    project_dir = args.project_dir or find_project_dir(Path.cwd())
    extra_args: List[str] = []
    for value in args.extra_vars:
        extra_args += ["-e", value]
    if args.slices > 1:
        return _main_sliced(args, project_dir, extra_args)
    result = rollout(
        project_dir,
        limit=args.limit,
        inventory=args.inventory,
        policy_dir=args.policy,
        extra_args=extra_args,
        progress=None if args.quiet else (lambda line: print(line, flush=True)),
    )
    if result.summary is not None:
        for problem in result.summary.problems:
            print(f"jetpolicy rollout: bad host record: {problem}", file=sys.stderr)
        print(f"jetpolicy report: {result.summary.markdown}")
    print(f"rollout {result.run_id}: {_outcome_word(result.exit_code)}: {result.reason}")
    if result.exit_code != 0:
        print(f"jetpolicy rollout: {result.reason}", file=sys.stderr)
    return result.exit_code


def _outcome_word(exit_code: int) -> str:
    return "OK" if exit_code == 0 else ("DEFERRED" if exit_code == DEFERRED_EXIT else "FAILED")


def _main_sliced(args: argparse.Namespace, project_dir: Path, extra_args: List[str]) -> int:
    from jetpolicy.controller.slices import SliceOutcome, list_hosts, plan_slices, run_slices

    hosts = list_hosts(project_dir, args.limit or "robots", args.inventory)
    canaries = list_hosts(project_dir, "canary", args.inventory)
    slices = plan_slices(hosts, canaries, args.slices)
    base = os.environ.get("JETPOLICY_RUN_ID") or new_run_id()

    def run_one(index: int, members: List[str]) -> SliceOutcome:
        def say(line: str) -> None:
            print(f"[slice {index}] {line}", flush=True)

        say(f"starting: {', '.join(members)}")
        result = rollout(
            project_dir,
            limit=",".join(members),
            inventory=args.inventory,
            policy_dir=args.policy,
            # The slice's first host goes alone first: each slice has a canary of its own.
            extra_args=[*extra_args, "-e", f"jetpolicy_canary={members[0]}"],
            progress=None if args.quiet else say,
            run_id=f"{base}-slice{index}",
        )
        say(f"{_outcome_word(result.exit_code)}: {result.reason} (report {result.report_dir})")
        return SliceOutcome(index, members, result.exit_code, result.reason, result.run_id)

    outcomes = run_slices(slices, run_one, args.slice_parallel)
    failed = [o for o in outcomes if o.exit_code != 0]
    for outcome in outcomes:
        print(f"slice {outcome.index} ({len(outcome.hosts)} hosts): "
              f"{_outcome_word(outcome.exit_code)}: {outcome.reason}")
    if failed:
        print(f"jetpolicy rollout: slice(s) {', '.join(str(o.index) for o in failed)} did not succeed: "
              f"{failed[0].reason}", file=sys.stderr)
        return 1
    print(f"rollout {base}: OK: {len(outcomes)} slices, {len(hosts)} hosts")
    return 0
