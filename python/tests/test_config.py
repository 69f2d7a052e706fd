"""Runner configuration loading and validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest

from jetpolicy.common.errors import ConfigError
from jetpolicy.robot.config import config_from_dict, load_config


def test_minimal_config_gets_defaults_and_resolves_relative_paths(tmp_path: Path) -> None:
    """Only release_dir is required; relative paths are taken from the config file's folder."""
    path = tmp_path / "runner.json"
    path.write_text(json.dumps({"release_dir": "rel"}))
    config = load_config(path)
    assert config.release_dir == tmp_path.resolve() / "rel"
    assert config.backend == "auto" and config.rate_hz is None and config.overrun_policy == "skip"
    assert config.transport.kind == "udp" and config.stale_after_ticks == 5
    assert config.realtime.sched_fifo_priority is None and not config.realtime.required


def test_full_config_round_trips(tmp_path: Path) -> None:
    """Every documented field is read with its type."""
    raw = {
        "release_dir": "/opt/jetpolicy/current",
        "engine": "/opt/jetpolicy/engines/x.engine",
        "backend": "tensorrt",
        "rate_hz": 500,
        "spin_us": 200,
        "overrun_policy": "skip",
        "status_file": "/run/jetpolicy/status.json",
        "metrics_file": None,
        "status_interval_s": 0.5,
        "transport": {"kind": "unix", "bind": "/run/jetpolicy/obs.sock", "action_to": "@robot-actions"},
        "stale_after_ticks": 10,
        "warmup_ticks": 0,
        "realtime": {"sched_fifo_priority": 80, "cpu_affinity": [3], "mlockall": True, "required": True},
        "watchdog": False,
    }
    config = config_from_dict(raw, base=tmp_path)
    assert config.rate_hz == 500.0 and isinstance(config.rate_hz, float)
    assert config.metrics_file is None
    assert config.transport.action_to == "@robot-actions"
    assert config.realtime.cpu_affinity == [3] and config.realtime.required
    assert config.engine == Path("/opt/jetpolicy/engines/x.engine")


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({}, "release_dir"),
        ({"release_dir": "r", "rate": 100}, "unknown key"),
        ({"release_dir": "r", "backend": "cuda"}, "'backend'"),
        ({"release_dir": "r", "rate_hz": 0}, "'rate_hz'"),
        ({"release_dir": "r", "rate_hz": "100"}, "'rate_hz'"),
        ({"release_dir": "r", "spin_us": True}, "'spin_us'"),
        ({"release_dir": "r", "rate_hz": 1000, "spin_us": 1000}, "spin_us"),
        ({"release_dir": "r", "overrun_policy": "catch_up"}, "'overrun_policy'"),
        ({"release_dir": "r", "transport": {"kind": "tcp"}}, "'kind'"),
        ({"release_dir": "r", "transport": {"kind": "unix"}}, "'bind'"),
        ({"release_dir": "r", "transport": {"kind": "replay"}}, "'path'"),
        ({"release_dir": "r", "realtime": {"sched_fifo_priority": 100}}, "'sched_fifo_priority'"),
        ({"release_dir": "r", "realtime": {"cpu_affinity": []}}, "'cpu_affinity'"),
        ({"release_dir": "r", "realtime": {"mlockall": "yes"}}, "'mlockall'"),
        ({"release_dir": "r", "stale_after_ticks": 0}, "'stale_after_ticks'"),
    ],
)
def test_invalid_values_name_the_field(raw: Dict[str, Any], needle: str) -> None:
    """Each bad value raises a ConfigError whose message names the offending field and has a fix."""
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    assert needle in info.value.cause
    assert info.value.fix


def test_missing_and_broken_files(tmp_path: Path) -> None:
    """A missing file and invalid JSON are ConfigErrors naming the path."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad)


def test_engine_for_release_substitutes_the_release_id(tmp_path: Path) -> None:
    """`{release}` in the engine path picks the engine built for the active release, if it exists."""
    from jetpolicy.robot.config import engine_for_release

    release = tmp_path / "releases" / "abc123"
    release.mkdir(parents=True)
    engines = tmp_path / "engines" / "by-release"
    engines.mkdir(parents=True)
    template = engines / "{release}.engine"
    assert engine_for_release(template, release) is None
    (engines / "abc123.engine").write_bytes(b"plan")
    assert engine_for_release(template, release) == engines / "abc123.engine"
    assert engine_for_release(None, release) is None
