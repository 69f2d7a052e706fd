"""`jetpolicy bench`: the policy measured in the real loop returns the documented JSON."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
from fakeclock import MS, FakeClock

from jetpolicy.robot.bench import run_bench
from jetpolicy.robot.conditions import ConditionSampler


@pytest.mark.parametrize(
    ("stalls", "ticks", "skipped"),
    [
        pytest.param({}, 201, 0, id="on-time"),
        # Preempted 23 ms while sleeping toward the 100th measured release (after 40 warm-up
        # ticks): the four releases whose deadlines passed are skipped and counted, not run late.
        pytest.param({141: 23 * MS}, 197, 4, id="preempted"),
    ],
)
def test_run_bench_keys_and_values_on_a_fake_clock(
    example_release: Path, stalls: Dict[int, int], ticks: int, skipped: int
) -> None:
    """A 1 s bench at 200 Hz after 0.2 s of warm-up, on a fake clock: releases 0..200 of the
    measured loop, each run or counted skipped; ordered percentiles; drift only from the skip."""
    clock = FakeClock(stalls=stalls)
    result = run_bench(example_release, rate_hz=200, duration_s=1.0, backend="onnxruntime", warmup_s=0.2,
                       now_ns=clock.now_ns, sleep_s=clock.sleep_s)  # fmt: skip
    for key in ("backend", "backend_reason", "rate_hz", "ticks", "inference_us", "period_error_us",
                "drift_pct", "deadline_miss_rate", "overruns", "skipped_periods"):  # fmt: skip
        assert key in result, key
    assert result["backend"] == "onnxruntime"
    assert result["rate_hz"] == 200.0
    assert (result["ticks"], result["skipped_periods"]) == (ticks, skipped)
    assert result["overruns"] == (1 if skipped else 0)
    inf = result["inference_us"]
    assert 0 < inf["p50"] <= inf["p90"] <= inf["p99"] <= inf["max"]
    assert set(result["period_error_us"]) == {"p50", "p99", "max"}
    # A skipped release is a missed deadline for the robot: the rate counts it against every release.
    assert result["deadline_miss_rate"] == round(skipped / (ticks + skipped), 6)
    # The mean period over the run: the grid's 5 ms, stretched only by the skipped releases.
    expected_drift = ((ticks - 1 + skipped) / (ticks - 1) - 1) * 100
    assert result["drift_pct"] == pytest.approx(expected_drift, abs=0.01)


def test_the_bench_json_carries_its_conditions(example_release: Path, tmp_path: Path) -> None:
    """The sampler given is entered around the measured loop and sampled at its start and end (a
    background thread samples between); its summary is the JSON's `conditions`."""
    proc = tmp_path / "proc"
    (proc / "77").mkdir(parents=True)
    (proc / "77" / "status").write_text("VmRSS:\t  102400 kB\n")
    (proc / "meminfo").write_text("MemTotal:  4096000 kB\nMemAvailable:  3072000 kB\n")
    clock = FakeClock()
    result = run_bench(example_release, rate_hz=200, duration_s=0.5, backend="onnxruntime", warmup_s=0,
                       now_ns=clock.now_ns, sleep_s=clock.sleep_s,
                       sampler=ConditionSampler(77, proc=proc, thermal=tmp_path / "none"))  # fmt: skip
    conditions = result["conditions"]
    assert conditions["source"] == "proc" and conditions["samples"] >= 2
    assert conditions["runner_pid"] == 77 and conditions["runner_rss_mb"] == {"min": 100.0, "max": 100.0}
    assert conditions["ram_used_mb"] == {"min": 1000.0, "max": 1000.0}
    assert len(conditions["series"]) == conditions["samples"]


def test_cli_prints_json_on_stdout_and_progress_on_stderr(example_release: Path) -> None:
    """stdout is exactly one JSON document (the manifest rate is used); the progress bar goes to
    stderr; `--conditions proc` samples /proc with the bench's own pid as the runner's."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jetpolicy.cli",
            "bench",
            "--release",
            str(example_release),
            "--duration-s",
            "0.5",
            "--warmup-s",
            "0",
            "--conditions",
            "proc",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    result = json.loads(stdout)
    assert result["rate_hz"] == 100.0  # the example manifest's control rate
    assert "100.0%" in stderr
    assert result["conditions"]["source"] == "proc" and result["conditions"]["runner_pid"] == process.pid
    assert result["conditions"]["runner_rss_mb"]["min"] > 0


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jetpolicy.cli", "bench", *args],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_config_gives_the_runners_settings(example_release: Path, tmp_path: Path) -> None:
    """--config (as the bench unit runs it): the runner's release (its `current` link, resolved),
    rate and backend, its real-time settings applied after the warm-up; `process` is what the kernel
    says about the process that measured."""
    current = tmp_path / "current"
    current.symlink_to(example_release)
    config = tmp_path / "runner.json"
    config.write_text(json.dumps({"release_dir": str(current), "backend": "onnxruntime", "rate_hz": 50,
                                  "transport": {"kind": "synthetic"},
                                  "realtime": {"gc_freeze": True, "mlockall": False}}))  # fmt: skip
    done = run_cli("--config", str(config), "--duration-s", "0.3", "--warmup-s", "0.1", "--quiet")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["rate_hz"] == 50.0 and result["backend"] == "onnxruntime"
    assert result["release"] == example_release.resolve().name
    assert [(step["setting"], step["applied"]) for step in result["realtime"]] == [("gc_freeze", True)]
    process = result["process"]
    assert isinstance(process["pid"], int) and process["pid"] != os.getpid()
    assert process["user"] == pwd.getpwuid(os.getuid()).pw_name and process["scheduler"] == "SCHED_OTHER"
    assert process["seccomp"] in ("off", "filter") and process["cpus"]
    # An option given on the command line wins over the config's.
    again = json.loads(run_cli("--config", str(config), "--rate-hz", "40", "--duration-s", "0.2",
                               "--warmup-s", "0", "--quiet").stdout)  # fmt: skip
    assert again["rate_hz"] == 40.0 and again["backend"] == "onnxruntime"


def test_without_a_release_or_config_the_cause_is_named() -> None:
    done = run_cli("--duration-s", "0.2")
    assert done.returncode == 2 and "no release to benchmark" in done.stderr and "--config" in done.stderr
