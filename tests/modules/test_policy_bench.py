"""policy_bench with a fake jetpolicy executable and a fake systemctl: the live window (the unit's
MainPID) and the bench unit (`systemctl start NAME@SECONDS.service`, which the fake runs as the
unit template does: `jetpolicy bench --config ... --duration-s SECONDS`, stdout and stderr to files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from moduletest import load_module, write_executable

policy_bench = load_module("policy_bench")

BENCH = {"release": "3f2a9c1d0b7e4a55", "backend": "onnxruntime", "rate_hz": 100, "ticks": 500,
         "inference_us": {"p50": 180, "p90": 210, "p99": 260, "max": 410},
         "period_error_us": {"p50": 12, "p99": 55, "max": 140}, "drift_pct": 0.01,
         "deadline_miss_rate": 0.0, "overruns": 0,
         "process": {"user": "jetpolicy", "scheduler": "SCHED_FIFO", "priority": 80, "cpus": "3",
                     "seccomp": "filter", "no_new_privs": True}}  # fmt: skip


def fake_venv(tmp_path: Path, stdout: str, rc: int = 0, stderr: str = "progress 100%") -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    args_file = tmp_path / "bench-args.json"
    write_executable(venv / "bin/jetpolicy", (
        "#!/usr/bin/env python3\nimport json, sys\n"
        f"json.dump(sys.argv[1:], open({str(args_file)!r}, 'w'))\n"
        f"sys.stderr.write({stderr!r} + '\\n')\nsys.stdout.write({stdout!r})\nsys.exit({rc:d})\n"))
    return venv


def release(tmp_path: Path) -> Path:
    target = tmp_path / "releases/3f2a9c1d0b7e4a55"
    target.mkdir(parents=True)
    (tmp_path / "current").symlink_to(target)
    return tmp_path / "current"


@pytest.fixture
def systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fake systemctl first on PATH. `show --property=MainPID` prints `main_pid`, `LoadState` prints
    `load_state`; `start NAME@S.service` runs <venv>/bin/jetpolicy as the bench unit's ExecStart with
    its stdout and stderr in <results>/S.json and S.stderr, exit status its own. Each argv is kept."""

    def install(main_pid: str = "4242", rc: int = 0, load_state: str = "loaded") -> Path:
        bin_dir = tmp_path / "fakebin"
        bin_dir.mkdir(exist_ok=True)
        calls = tmp_path / "systemctl-calls.jsonl"
        venv, results = tmp_path / "venv", tmp_path / "bench-results"
        write_executable(bin_dir / "systemctl", (
            "#!/usr/bin/env python3\nimport json, subprocess, sys\n"
            f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
            "if sys.argv[1] == 'start':\n"
            "    seconds = sys.argv[2].split('@', 1)[1][:-len('.service')]\n"
            f"    with open({str(results)!r} + '/' + seconds + '.json', 'w') as out, "
            f"open({str(results)!r} + '/' + seconds + '.stderr', 'w') as err:\n"
            f"        sys.exit(subprocess.call([{str(venv / 'bin/jetpolicy')!r}, 'bench', '--config', "
            "'/opt/jetpolicy/runner.json', '--duration-s', seconds, '--quiet'], stdout=out, stderr=err) and 3)\n"
            "value = {'--property=MainPID': " + repr(main_pid) + ", '--property=LoadState': " + repr(load_state) + "}\n"
            f"sys.stdout.write(value[sys.argv[2]] + '\\n')\nsys.exit({rc:d})\n"))
        monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
        return calls

    return install


def calls_of(calls: Path) -> list[list[str]]:
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def bench_args(tmp_path: Path, **extra: object) -> dict[str, object]:
    return {"source": "bench", "release_dir": str(release(tmp_path)), "venv": str(tmp_path / "venv"),
            "duration_s": 5, "bench_results_dir": str(tmp_path / "bench-results"), **extra}  # fmt: skip


def test_bench_runs_the_bench_unit_and_keeps_its_result(run_module, tmp_path: Path, systemctl) -> None:
    """source=bench starts NAME@5.service (never runs the policy itself); the unit's JSON becomes
    ansible_facts.policy_bench and the .fact file; changed stays false."""
    calls = systemctl()
    fake_venv(tmp_path, json.dumps(BENCH) + "\n")
    fact = tmp_path / "facts.d/jetpolicy_bench.fact"
    result = run_module(policy_bench, bench_args(tmp_path, fact_path=str(fact)))
    assert "failed" not in result, result
    assert calls_of(calls) == [["show", "--property=LoadState", "--value", "jetpolicy-runner-bench@5.service"],
                               ["start", "jetpolicy-runner-bench@5.service"]]
    assert result["bench_unit"] == "jetpolicy-runner-bench@5.service" and result["cmd"][1:] == calls_of(calls)[1]
    # What the unit ran: the runner's config, the duration from the instance name.
    argv = json.loads((tmp_path / "bench-args.json").read_text())
    assert argv == ["bench", "--config", "/opt/jetpolicy/runner.json", "--duration-s", "5", "--quiet"]
    bench = result["ansible_facts"]["policy_bench"]
    assert bench["source"] == "bench" and bench["inference_us"]["p99"] == 260
    assert bench["process"]["user"] == "jetpolicy" and bench["process"]["scheduler"] == "SCHED_FIFO"
    assert bench["release_id"] == "3f2a9c1d0b7e4a55" and bench["measured_at"].endswith("Z")
    assert result["changed"] is False and result["fact_written"] is True
    assert json.loads(fact.read_text()) == bench
    assert oct((tmp_path / "bench-results").stat().st_mode & 0o777) == "0o700"


def test_a_previous_result_is_never_read_as_this_one(run_module, tmp_path: Path, systemctl) -> None:
    """The unit's old output file is removed before the start: a bench that prints nothing fails."""
    systemctl()
    fake_venv(tmp_path, "")
    (tmp_path / "bench-results").mkdir(mode=0o700)
    (tmp_path / "bench-results/5.json").write_text(json.dumps(BENCH))
    result = run_module(policy_bench, bench_args(tmp_path, save_fact=False))
    assert result["failed"] is True and "printed no usable JSON" in result["msg"]


def test_check_mode_skips(run_module, tmp_path: Path, systemctl) -> None:
    """Check mode starts no unit and reports a skip reason."""
    calls = systemctl()
    fake_venv(tmp_path, json.dumps(BENCH))
    result = run_module(policy_bench, bench_args(tmp_path, fact_path=str(tmp_path / "f.fact")), check_mode=True)
    assert result["skipped"] is True and "check mode" in result["msg"]
    assert result["cmd"] == ["systemctl", "start", "jetpolicy-runner-bench@5.service"]
    assert calls_of(calls) == [] and not (tmp_path / "f.fact").exists()


def test_bench_failure_reports_rc_and_the_units_stderr(run_module, tmp_path: Path, systemctl) -> None:
    """A failing bench names the unit, the start's rc and the bench's own stderr tail."""
    systemctl()
    fake_venv(tmp_path, "", rc=2, stderr="jetpolicy bench: engine /x does not match this TensorRT")
    result = run_module(policy_bench, bench_args(tmp_path, save_fact=False))
    assert result["failed"] is True and result["rc"] == 3
    assert result["msg"] == ("the bench unit jetpolicy-runner-bench@5.service failed (rc=3): "
                             "jetpolicy bench: engine /x does not match this TensorRT")
    assert result["stderr_tail"] == ["jetpolicy bench: engine /x does not match this TensorRT"]


def test_bad_json_fails(run_module, tmp_path: Path, systemctl) -> None:
    """Output without the documented keys is a failure, not a fact."""
    systemctl()
    fake_venv(tmp_path, '{"backend": "auto"}')
    result = run_module(policy_bench, bench_args(tmp_path, save_fact=False))
    assert result["failed"] is True and "lacks" in result["msg"]


def test_a_bench_of_another_release_fails(run_module, tmp_path: Path, systemctl) -> None:
    """The unit benchmarks what `current` points to when it starts: another release is refused."""
    systemctl()
    fake_venv(tmp_path, json.dumps(dict(BENCH, release="0000000000000000")))
    result = run_module(policy_bench, bench_args(tmp_path, save_fact=False))
    assert result["failed"] is True
    assert "benchmarked release 0000000000000000, not 3f2a9c1d0b7e4a55" in result["msg"]


def test_a_missing_bench_unit_is_named(run_module, tmp_path: Path, systemctl) -> None:
    """A robot whose policy_service predates the bench unit: the cause and the fix, nothing started."""
    calls = systemctl(load_state="not-found")
    fake_venv(tmp_path, json.dumps(BENCH))
    result = run_module(policy_bench, bench_args(tmp_path, save_fact=False))
    assert result["failed"] is True
    assert "bench unit jetpolicy-runner-bench@5.service is not installed (LoadState not-found)" in result["msg"]
    assert [call[0] for call in calls_of(calls)] == ["show"]


def test_live_needs_the_runtime(run_module, tmp_path: Path, systemctl) -> None:
    """A missing runtime is named."""
    systemctl()
    result = run_module(policy_bench, {"source": "live", "release_id": "x", "venv": str(tmp_path / "none")})
    assert result["failed"] is True and "jetpolicy executable" in result["msg"]


WINDOW = {"source": "live runner", "backend": "onnxruntime", "rate_hz": 100.0, "ticks": 500, "pid": 4242,
          "release": "3f2a9c1d0b7e4a55", "window_s": 5.0, "updated_at": {"start": 1.0, "end": 6.0},
          "inference_us": {"p50": 185.1, "p90": 185.1, "p99": 404.0, "max": 404.0},
          "deadline_miss_rate": 0.0, "overruns": 0, "conditions": {"samples": 21, "cpu_percent": None,
          "runner_pid": 4242, "runner_rss_mb": None, "thermal_c": None}}  # fmt: skip


def test_live_source_measures_the_running_service(run_module, tmp_path: Path, systemctl) -> None:
    """source=live (the default) reads the unit's MainPID and runs `jetpolicy window` with it and
    the release; the window JSON becomes the same fact the judge reads."""
    systemctl_args = systemctl("4242")
    venv = fake_venv(tmp_path, json.dumps(WINDOW) + "\n")
    fact = tmp_path / "facts.d/jetpolicy_bench.fact"
    result = run_module(policy_bench, {"release_id": "3f2a9c1d0b7e4a55", "venv": str(venv), "duration_s": 5,
                                       "status_file": "/run/jetpolicy/status.json", "fact_path": str(fact)})
    assert "failed" not in result, result
    assert calls_of(systemctl_args) == [["show", "--property=MainPID", "--value", "jetpolicy-runner"]]
    argv = json.loads((tmp_path / "bench-args.json").read_text())
    assert argv == ["window", "--status", "/run/jetpolicy/status.json", "--duration", "5", "--pid", "4242",
                    "--release", "3f2a9c1d0b7e4a55"]  # fmt: skip
    assert result["cmd"][1:] == argv and result["main_pid"] == 4242 and result["changed"] is False
    facts = result["ansible_facts"]["policy_bench"]
    assert facts["source"] == "live runner" and facts["inference_us"]["p99"] == 404.0
    assert facts["release_id"] == "3f2a9c1d0b7e4a55" and facts["measured_at"].endswith("Z")
    assert json.loads(fact.read_text()) == facts


def test_live_source_takes_the_release_from_release_dir(run_module, tmp_path: Path, systemctl) -> None:
    """Without release_id the runner must have loaded the release release_dir points to."""
    systemctl("4242")
    venv = fake_venv(tmp_path, json.dumps(WINDOW))
    result = run_module(policy_bench, {"release_dir": str(release(tmp_path)), "venv": str(venv),
                                       "service": "other-runner", "status_file": "/tmp/s.json", "save_fact": False})
    assert result["cmd"][1:] == ["window", "--status", "/tmp/s.json", "--duration", "10", "--pid", "4242",
                                 "--release", "3f2a9c1d0b7e4a55"]  # fmt: skip


@pytest.mark.parametrize(("main_pid", "rc", "message"), [
    ("0", 0, "jetpolicy-runner has no running main process (MainPID 0)"),
    ("", 0, "systemctl show jetpolicy-runner: MainPID '' is not a number"),
    ("", 1, "systemctl show jetpolicy-runner failed (rc=1)"),
])  # fmt: skip
def test_live_source_without_a_main_process_fails(
    run_module, tmp_path: Path, systemctl, main_pid: str, rc: int, message: str
) -> None:
    """No main process, no window: the cause is the unit's, and the window never runs."""
    systemctl(main_pid, rc)
    venv = fake_venv(tmp_path, json.dumps(WINDOW))
    result = run_module(policy_bench, {"venv": str(venv), "save_fact": False})
    assert result["failed"] is True and message in result["msg"]
    assert not (tmp_path / "bench-args.json").exists()


def test_live_window_refusal_is_the_failure_message(run_module, tmp_path: Path, systemctl) -> None:
    """`jetpolicy window` refusing (exit 2) fails the task with its stderr line."""
    systemctl("4242")
    stderr = "jetpolicy window: the runner restarted within the window (pid 4242 -> 4243); fix: measure again"
    venv = fake_venv(tmp_path, "", rc=2, stderr=stderr)
    result = run_module(policy_bench, {"venv": str(venv), "save_fact": False, "release_id": "x"})
    assert result["failed"] is True and result["rc"] == 2
    assert result["msg"] == f"jetpolicy window of jetpolicy-runner failed (rc=2): {stderr}"


def test_live_window_json_must_be_a_window(run_module, tmp_path: Path, systemctl) -> None:
    systemctl("4242")
    venv = fake_venv(tmp_path, json.dumps(BENCH))
    result = run_module(policy_bench, {"venv": str(venv), "save_fact": False})
    assert result["failed"] is True and "lacks source, pid, window_s" in result["msg"]


def test_live_check_mode_runs_nothing(run_module, tmp_path: Path, systemctl) -> None:
    systemctl_args = systemctl("4242")
    venv = fake_venv(tmp_path, json.dumps(WINDOW))
    result = run_module(policy_bench, {"venv": str(venv)}, check_mode=True)
    assert result["skipped"] is True and result["cmd"][1] == "window" and "--pid" not in result["cmd"]
    assert calls_of(systemctl_args) == [] and not (tmp_path / "bench-args.json").exists()


def test_bench_source_needs_the_release_it_expects(run_module, tmp_path: Path) -> None:
    result = run_module(policy_bench, {"source": "bench", "venv": str(tmp_path)})
    assert result["failed"] is True and "release_dir, release_id" in result["msg"]


def test_auto_benches_when_the_live_runner_ran_no_inference(run_module, tmp_path: Path, systemctl) -> None:
    """source=auto (the default): an idle robot's runner has no observations to infer on, so the
    window refuses with its own exit code and the release is measured by bench instead, saying why."""
    calls = systemctl("4242")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    refusal = "jetpolicy window: only 0 of the window's 500 ticks ran the policy; fix: feed the runner"
    write_executable(venv / "bin/jetpolicy", (
        "#!/usr/bin/env python3\nimport json, sys\n"
        "if sys.argv[1] == 'window':\n"
        f"    sys.stderr.write({refusal!r} + '\\n'); sys.exit(4)\n"
        f"sys.stdout.write({json.dumps(BENCH)!r})\n"))  # fmt: skip
    result = run_module(policy_bench, {"venv": str(venv), "release_dir": str(release(tmp_path)), "duration_s": 5,
                                       "bench_results_dir": str(tmp_path / "bench-results"), "save_fact": False})
    assert "failed" not in result, result
    assert result["live_refused"] == refusal and result["cmd"][1:] == ["start", "jetpolicy-runner-bench@5.service"]
    assert [call[0] for call in calls_of(calls)] == ["show", "show", "start"]
    assert result["ansible_facts"]["policy_bench"]["source"] == "bench"


def test_auto_keeps_any_other_window_refusal(run_module, tmp_path: Path, systemctl) -> None:
    """A restart inside the window (exit 2) is a failure under auto too, never a reason to bench."""
    systemctl("4242")
    venv = fake_venv(tmp_path, "", rc=2, stderr="jetpolicy window: the runner restarted within the window")
    result = run_module(policy_bench, {"venv": str(venv), "release_dir": str(release(tmp_path)), "save_fact": False})
    assert result["failed"] is True and result["rc"] == 2 and "live_refused" not in result
