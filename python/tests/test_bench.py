"""`jetpolicy bench`: the policy measured in the real loop returns the documented JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from jetpolicy.robot.bench import run_bench


def test_run_bench_keys_and_sane_values(example_release: Path) -> None:
    """A 1 s bench at 200 Hz: ~200 ticks, ordered percentiles, small drift, the documented keys."""
    result = run_bench(example_release, rate_hz=200, duration_s=1.0, backend="onnxruntime", warmup_s=0.2)
    for key in ("backend", "backend_reason", "rate_hz", "ticks", "inference_us", "period_error_us",
                "drift_pct", "deadline_miss_rate", "overruns"):  # fmt: skip
        assert key in result, key
    assert result["backend"] == "onnxruntime"
    assert result["rate_hz"] == 200.0
    assert 180 <= result["ticks"] <= 202
    inf = result["inference_us"]
    assert 0 < inf["p50"] <= inf["p90"] <= inf["p99"] <= inf["max"]
    assert set(result["period_error_us"]) == {"p50", "p99", "max"}
    assert 0.0 <= result["deadline_miss_rate"] <= 1.0
    assert abs(result["drift_pct"]) < 5.0


def test_cli_prints_json_on_stdout_and_progress_on_stderr(example_release: Path) -> None:
    """stdout is exactly one JSON document (the manifest rate is used); the progress bar goes to stderr."""
    done = subprocess.run(
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
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["rate_hz"] == 100.0  # the example manifest's control rate
    assert "100.0%" in done.stderr
