"""policy_bench with a fake jetpolicy executable."""

from __future__ import annotations

import json
from pathlib import Path

from moduletest import load_module, write_executable

policy_bench = load_module("policy_bench")

BENCH = {"backend": "onnxruntime", "rate_hz": 100, "ticks": 500,
         "inference_us": {"p50": 180, "p90": 210, "p99": 260, "max": 410},
         "period_error_us": {"p50": 12, "p99": 55, "max": 140}, "drift_pct": 0.01,
         "deadline_miss_rate": 0.0, "overruns": 0}


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


def test_bench_returns_fact_and_writes_file(run_module, tmp_path: Path) -> None:
    """The bench JSON becomes ansible_facts.policy_bench and the .fact file; changed stays false."""
    venv = fake_venv(tmp_path, json.dumps(BENCH) + "\n")
    fact = tmp_path / "facts.d/jetpolicy_bench.fact"
    args = {"release_dir": str(release(tmp_path)), "venv": str(venv), "rate_hz": 100, "duration_s": 5,
                "backend": "onnxruntime", "fact_path": str(fact)}
    result = run_module(policy_bench, args)
    assert "failed" not in result, result
    bench = result["ansible_facts"]["policy_bench"]
    assert bench["deadline_miss_rate"] == 0.0 and bench["inference_us"]["p99"] == 260
    assert bench["release_id"] == "3f2a9c1d0b7e4a55" and bench["measured_at"].endswith("Z")
    assert result["changed"] is False and result["fact_written"] is True
    assert json.loads(fact.read_text()) == bench
    argv = json.loads((tmp_path / "bench-args.json").read_text())
    assert argv == ["bench", "--release", args["release_dir"], "--rate-hz", "100", "--duration-s", "5",
                    "--backend", "onnxruntime"]


def test_engine_flag_passed(run_module, tmp_path: Path) -> None:
    """--engine is passed for the tensorrt backend."""
    venv = fake_venv(tmp_path, json.dumps(BENCH))
    result = run_module(policy_bench, {"release_dir": str(release(tmp_path)), "venv": str(venv), "backend": "tensorrt",
                                           "engine": "/opt/jetpolicy/engines/k.engine", "save_fact": False})
    assert result["cmd"][-2:] == ["--engine", "/opt/jetpolicy/engines/k.engine"]
    assert result["fact_written"] is False


def test_check_mode_skips(run_module, tmp_path: Path) -> None:
    """Check mode does not run the benchmark and reports a skip reason."""
    venv = fake_venv(tmp_path, json.dumps(BENCH))
    result = run_module(policy_bench, {"release_dir": str(release(tmp_path)), "venv": str(venv),
                                           "fact_path": str(tmp_path / "f.fact")}, check_mode=True)
    assert result["skipped"] is True and "check mode" in result["msg"]
    assert not (tmp_path / "bench-args.json").exists() and not (tmp_path / "f.fact").exists()


def test_bench_failure_reports_rc_and_stderr(run_module, tmp_path: Path) -> None:
    """A failing bench names the release, rc and the stderr tail."""
    venv = fake_venv(tmp_path, "", rc=2, stderr="error: engine /x does not match this TensorRT")
    result = run_module(policy_bench, {"release_dir": str(release(tmp_path)), "venv": str(venv),
                                           "fact_path": str(tmp_path / "f.fact")})
    assert result["failed"] is True and result["rc"] == 2
    assert "rc=2" in result["msg"] and "does not match" in result["msg"]
    assert result["stderr_tail"] == ["error: engine /x does not match this TensorRT"]


def test_bad_json_fails(run_module, tmp_path: Path) -> None:
    """Output without the documented keys is a failure, not a fact."""
    venv = fake_venv(tmp_path, '{"backend": "auto"}')
    result = run_module(policy_bench, {"release_dir": str(release(tmp_path)), "venv": str(venv),
                                           "fact_path": str(tmp_path / "f.fact")})
    assert result["failed"] is True and "lacks" in result["msg"]


def test_missing_executable_fails(run_module, tmp_path: Path) -> None:
    """A missing runtime is named."""
    result = run_module(policy_bench, {"release_dir": str(release(tmp_path)), "venv": str(tmp_path / "none")})
    assert result["failed"] is True and "jetpolicy executable" in result["msg"]
