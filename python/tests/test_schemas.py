"""The JSON Schemas: valid Draft 2020-12, in step with the code, and applied by an in-house validator
that agrees with `jsonschema` (which robots cannot install) on valid and mutated documents."""

from __future__ import annotations

import copy
import json
import random
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple, Type

import jsonschema
import pytest
import referencing

from jetpolicy.common.errors import ConfigError, ManifestError
from jetpolicy.common.manifest import (
    SUPPORTED_DTYPES,
    TENSOR_ROLES,
    TENSORRT_PRECISIONS,
    TensorRTSettings,
    manifest_from_dict,
)
from jetpolicy.common.schema import SCHEMA_DIR, SCHEMA_NAMES, Schema, load_schema, version_problem
from jetpolicy.controller.record import (
    OUTCOME_VERDICTS,
    RECORD_VERDICTS,
    HostRecord,
    PlatformInfo,
    RecordError,
    Rollback,
)
from jetpolicy.controller.report import read_summary
from jetpolicy.robot import config as runner_config
from jetpolicy.robot import releases
from jetpolicy.robot.backends.base import BACKEND_KINDS
from jetpolicy.robot.conditions import SERIES_POINTS, ConditionSampler, TegrastatsSampler
from jetpolicy.robot.hold import Hold
from jetpolicy.robot.miss_policy import MISS_STATES
from jetpolicy.robot.runner import loop_metrics
from jetpolicy.robot.scheduler import OVERRUN_POLICIES
from jetpolicy.robot.status import STATUS_REQUIRED_KEYS, StatusFileError, StatusWriter, read_status

VERSION_FIELD = {**{name: "schema_version" for name in SCHEMA_NAMES}, "policy-manifest": "format"}


def _documents() -> Dict[str, Dict[str, Any]]:
    return {name: json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text()) for name in SCHEMA_NAMES}


def _reference(name: str) -> jsonschema.Draft202012Validator:
    """jsonschema's validator for `name`, the sibling files registered under their `$id`s."""
    docs = _documents()
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        (doc["$id"], referencing.Resource.from_contents(doc)) for doc in docs.values()
    )
    return jsonschema.Draft202012Validator(docs[name], registry=registry)


def test_every_schema_is_draft_2020_12_and_loads() -> None:
    """jsonschema accepts each file as a Draft 2020-12 schema, its $id ends in its file name, it has a
    version field that is 1, and the in-house validator (which refuses keywords it lacks) loads it."""
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.schema.json")) == sorted(
        f"{n}.schema.json" for n in SCHEMA_NAMES
    )
    for name, doc in _documents().items():
        jsonschema.Draft202012Validator.check_schema(doc)
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert doc["$id"].endswith(f"/{name}.schema.json")
        assert doc["properties"][VERSION_FIELD[name]]["const"] == 1
        assert isinstance(load_schema(name), Schema)


def test_a_keyword_the_validator_lacks_is_refused() -> None:
    """A schema edit using, say, oneOf fails at load instead of being silently not enforced."""
    with pytest.raises(ValueError, match="oneOf"):
        Schema("t", {"properties": {"a": {"oneOf": [{"type": "string"}]}}}, {})


def _enum(name: str, *pointer: str) -> List[Any]:
    node: Any = _documents()[name]
    for part in pointer:
        node = node[part]
    return list(node["enum"])


def _props(name: str, *pointer: str) -> List[str]:
    node: Any = _documents()[name]
    for part in pointer:
        node = node[part]
    return sorted(node["properties"])


def test_schemas_and_code_name_the_same_fields_and_choices() -> None:
    """Each schema's field names and choices are the ones its reader knows, so neither drifts."""
    assert _enum("policy-manifest", "$defs", "tensor", "properties", "dtype") == list(SUPPORTED_DTYPES)
    assert _enum("policy-manifest", "$defs", "tensor", "properties", "role") == list(TENSOR_ROLES)
    precisions = _enum("policy-manifest", "$defs", "tensorrt", "properties", "precision")
    assert precisions == list(TENSORRT_PRECISIONS)
    assert _props("policy-manifest", "$defs", "tensorrt") == sorted(f.name for f in fields(TensorRTSettings))
    assert _props("runner-config") == sorted(runner_config._TOP_KEYS)
    assert _props("runner-config", "properties", "transport") == sorted(runner_config._TRANSPORT_KEYS)
    assert _props("runner-config", "properties", "realtime") == sorted(runner_config._REALTIME_KEYS)
    assert _props("runner-config", "properties", "miss_policy") == sorted(runner_config._MISS_POLICY_KEYS)
    assert _enum("runner-config", "properties", "backend") == list(BACKEND_KINDS)
    assert _enum("runner-config", "properties", "overrun_policy") == list(OVERRUN_POLICIES)
    assert _enum("runner-config", "properties", "transport", "properties", "kind") == list(
        runner_config.TRANSPORT_KINDS
    )
    assert _documents()["runner-status"]["required"] == list(STATUS_REQUIRED_KEYS)
    assert _enum("runner-status", "properties", "miss_policy", "properties", "state") == list(MISS_STATES)
    assert _props("host-record") == sorted(HostRecord.field_names())
    assert _enum("host-record", "properties", "verdict") == list(RECORD_VERDICTS)
    assert _props("host-record", "$defs", "rollback") == sorted(Rollback.KEYS)
    assert _props("host-record", "$defs", "platformInfo") == sorted(PlatformInfo.KEYS)
    conditions = _documents()["host-record"]["$defs"]["conditions"]["properties"]
    assert conditions["source"]["enum"] == [TegrastatsSampler.source, ConditionSampler.source]
    assert conditions["series"]["maxItems"] == SERIES_POINTS
    entry = _documents()["rollout-report"]["$defs"]["hostEntry"]
    assert entry["properties"]["verdict"]["enum"] == list(OUTCOME_VERDICTS)
    assert sorted(entry["properties"]) == sorted({*HostRecord.field_names(), "why", "stats"})


# ---- Valid documents, as the writers produce them -----------------------------------------------


def _manifest() -> Dict[str, Any]:
    return {
        "format": 1,
        "name": "t",
        "sha256": "a" * 64,
        "control_rate_hz": 100,
        "created_by": "jetpolicy example",
        "inputs": [{"name": "obs", "shape": [1, 4], "dtype": "float32", "role": "observation"},
                   {"name": "h_in", "shape": [1, 2]}],
        "outputs": [{"name": "actions", "shape": [1, 2], "role": "action"},
                    {"name": "h_out", "shape": [1, 2]}],
        "state": [{"input": "h_in", "output": "h_out"}],
        "normalization": {"obs": {"mean": [0, 0, 0, 0], "std": [1, 1, 1, 1]}},
        "action": {"actions": {"scale": [1, 1], "low": [-1, -1], "high": [1, 1]}},
        "safe_action": {"actions": [0.0, 0.0]},
        "observation_layout": {"obs": [{"name": "a", "width": 2, "history": 2, "clip": [-5, 5]}]},
        "tensorrt": {"precision": "int8", "calibration_cache": {"file": "calib.cache", "sha256": "b" * 64},
                     "profiles": {"obs": {"min": [1, 4], "opt": [4, 4], "max": [8, 4]}}},
    }  # fmt: skip


def _config() -> Dict[str, Any]:
    # What roles/policy_service/templates/runner.json.j2 renders, every optional part switched on.
    return {
        "release_dir": "/opt/jetpolicy/current",
        "engine": "/opt/jetpolicy/engines/by-release/{release}.engine",
        "backend": "auto",
        "rate_hz": None,
        "overrun_policy": "skip",
        "stale_after_ticks": 5,
        "status_file": "/run/jetpolicy/status.json",
        "metrics_file": "/var/lib/jetpolicy/jetpolicy.prom",
        "status_interval_s": 1.0,
        "transport": {"kind": "udp", "bind": "127.0.0.1:9870", "action_to": "127.0.0.1:9871",
                      "allowed_peers": ["127.0.0.1"], "max_packets_per_tick": 64},
        "realtime": {"mlockall": True, "gc_freeze": True, "required": False, "cpu_affinity": [3]},
        "spin_us": 250,
        "cuda_graph": True,
        "miss_policy": {"hold_after": 2, "decay_after": 5, "safe_after": 20, "recover_after": 50},
    }  # fmt: skip


def _status() -> Dict[str, Any]:
    header = {"schema_version": 1, "state": "running", "pid": 42, "release": "/opt/jetpolicy/releases/a",
              "backend": "onnxruntime", "backend_reason": "", "rate_hz": 100.0, "started_at": 1.5,
              "updated_at": 2.5, "last_observation_at": 2.25,
              "realtime": [{"setting": "mlockall", "applied": False, "detail": "no"}],
              "warnings": ["no"]}  # fmt: skip
    return {**header, **loop_metrics(None)}


def _history(tmp_path: Path) -> Dict[str, Any]:
    from release_tree import stage

    for rid in "ab":
        stage(tmp_path, rid)
        releases.switch_release(tmp_path, rid, "deploy")
    last: Dict[str, Any] = releases.read_history(tmp_path)[-1]
    return last


def _record() -> Dict[str, Any]:
    record = HostRecord.from_json(
        {"host": "jetson-1", "verdict": "rolled_back", "platform": "orin", "is_l4t": True,
         "gates": {"health": {"status": "passed", "reasons": [], "ticks_per_s": 100.0},
                   "timing": {"status": "failed", "reasons": ["slow"], "latency_p99_us": 900,
                              "bench": {"a": 1, "conditions": {
                                  "source": "tegrastats", "samples": 2, "simulated": "replay", "note": "x",
                                  "ram_used_mb": {"min": 1.0, "max": 2.0},
                                  "series": [{"t": 0.0, "cpu_percent": None, "ram_used_mb": 1.0,
                                              "temp_max_c": 40.5}]}}},
                   "parity": {"status": "skipped", "cases": 32, "finite": True}},
         "rollback": {"performed": True, "reason": "slow", "from": "b", "to": "a", "health_after": {}},
         "platform_info": {"jetpack": "6.1", "l4t": "36.4.0", "tensorrt": "10.3.0", "power_mode": "MAXN",
                           "power_mode_id": 0, "engine_sha256": "c" * 64, "engine_precision": "fp16",
                           "builder_precision": None}},
        "jetson-1.json",
    )  # fmt: skip
    return record.to_json()


def _report() -> Dict[str, Any]:
    return {
        "schema_version": 1, "run_id": "r", "generated_at": "2026-01-01T00:00:00Z", "ok": False,
        "verdict": "rolled_back", "reason": "jetson-1 rolled back: slow", "run": {"stats": {}},
        "hosts": [{**_record(), "why": "slow", "stats": {"ok": 3, "failures": 0}},
                  {"host": "jetson-2", "verdict": "unreachable", "why": "no SSH",
                   "stats": {"unreachable": 1}}],
        "problems": [],
    }  # fmt: skip


def _valid(tmp_path: Path) -> Dict[str, Dict[str, Any]]:
    return {
        "policy-manifest": _manifest(),
        "runner-config": _config(),
        "runner-status": _status(),
        "operator-hold": Hold("calibrating", "alice", 1_700_000_000.5, 42).to_dict(),
        "release-history-record": _history(tmp_path),
        "host-record": _record(),
        "rollout-report": _report(),
        "failure-policy": {
            "schema_version": 1, "budget_percent": 10.0, "budget_robots": 2, "targets": 20,
            "on_failure": "rollback_all", "spent": True, "failed_robots": ["a", "b", "c"],
            "rolled_back_with_run": ["d"],
        },
    }


def test_writers_produce_valid_documents(tmp_path: Path) -> None:
    """What the writers produce (the history line, the record's to_json, the runner's metrics) is
    valid for both validators, and the version field is written where the writer owns it."""
    for name, doc in _valid(tmp_path).items():
        assert load_schema(name).problems(doc) == [], name
        assert _reference(name).is_valid(doc), name
    assert _history(tmp_path / "h")["schema_version"] == 1
    assert _record()["schema_version"] == 1


# ---- Property test: the in-house validator agrees with jsonschema on mutated documents -----------

REPLACEMENTS: List[Any] = [None, True, False, 0, -1, 1.5, 7, "x", "", [], [1], ["x"], {}, {"k": 1}]


def _paths(node: Any, path: Tuple[Any, ...] = ()) -> Iterator[Tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*path, index))


def _mutations(doc: Dict[str, Any], rng: random.Random, count: int) -> Iterator[Any]:
    """Documents one change away from `doc`: a value replaced, a key deleted or an unknown key added."""
    paths = list(_paths(doc))
    for _ in range(count):
        mutated = copy.deepcopy(doc)
        path = rng.choice(paths)
        if not path:
            yield rng.choice(REPLACEMENTS)
            continue
        parent: Any = mutated
        for part in path[:-1]:
            parent = parent[part]
        kind = rng.random()
        if kind < 0.2 and isinstance(parent, dict):
            del parent[path[-1]]
        elif kind < 0.3 and isinstance(parent, dict):
            parent["unknown_field"] = rng.choice(REPLACEMENTS)
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(REPLACEMENTS))
        yield mutated


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_in_house_validator_agrees_with_jsonschema(tmp_path: Path, name: str) -> None:
    """On 400 mutations of a valid document both validators say valid or both say invalid, and an
    invalid one always has a problem naming a field path (or the top level)."""
    doc = _valid(tmp_path)[name]
    ours, reference = load_schema(name), _reference(name)
    verdicts = {True: 0, False: 0}
    for mutated in _mutations(doc, random.Random(name), 400):
        problems = ours.problems(mutated)
        expected = reference.is_valid(mutated)
        theirs = [e.message for e in reference.iter_errors(mutated)]
        assert (not problems) == expected, (mutated, problems, theirs)
        verdicts[expected] += 1
    # The mutations exercise both sides, not only one.
    assert verdicts[True] > 10 and verdicts[False] > 50, verdicts


# ---- The readers use the schemas ----------------------------------------------------------------


def test_manifest_off_the_schema_names_the_file_and_field() -> None:
    """A field the parser never looked at (created_by) is refused by the schema, naming it."""
    raw = {**_manifest(), "created_by": 5}
    with pytest.raises(ManifestError) as info:
        manifest_from_dict(raw, source="policy.json")
    assert info.value.cause.startswith("policy.json: field 'created_by': expected string, got integer 5")
    assert "policy-manifest.schema.json" in info.value.cause


def test_manifest_of_wrong_structure_is_a_clear_error_not_a_crash() -> None:
    """normalization as a list used to crash the parser (AttributeError); now the schema names it."""
    with pytest.raises(ManifestError, match=r"field 'normalization': expected object, got array"):
        manifest_from_dict({**_manifest(), "normalization": []}, source="policy.json")


@pytest.mark.parametrize(
    ("name", "load", "error"),
    [
        pytest.param("policy-manifest", lambda raw: manifest_from_dict(raw, "policy.json"), ManifestError,
                     id="manifest"),
        pytest.param("runner-config", lambda raw: runner_config.config_from_dict(raw, "runner.json"),
                     ConfigError, id="config"),
        pytest.param("host-record", lambda raw: HostRecord.from_json(raw, "h.json"), RecordError,
                     id="record"),
    ],
)  # fmt: skip
def test_a_newer_major_version_is_refused_and_an_absent_one_is_1(
    tmp_path: Path, name: str, load: Callable[[Dict[str, Any]], Any], error: Type[Exception]
) -> None:
    """Version 2 is refused naming the field and a fix; no version field at all reads as version 1."""
    raw, key = _valid(tmp_path)[name], VERSION_FIELD[name]
    load({k: v for k, v in raw.items() if k != key})
    with pytest.raises(error) as info:
        load({**raw, key: 2})
    assert f"'{key}' is 2, newer than this jetpolicy reads (1)" in str(info.value)
    assert getattr(info.value, "fix", "")


def test_version_problem_accepts_only_the_supported_major() -> None:
    assert version_problem({}, "v", 1) is None and version_problem({"v": 1}, "v", 1) is None
    assert "newer" in str(version_problem({"v": 3}, "v", 1))
    assert "must be 1" in str(version_problem({"v": True}, "v", 1))
    assert "must be 1" in str(version_problem({"v": "1"}, "v", 1))


def test_status_off_the_schema_and_newer_are_refused(tmp_path: Path) -> None:
    """A status with a wrong type is damaged (naming the field); a newer one names the fix."""
    path = tmp_path / "status.json"
    assert StatusWriter(path).write(_status())
    assert read_status(path) == _status()
    StatusWriter(path).write({**_status(), "ticks": -3})
    with pytest.raises(StatusFileError, match=r"field 'ticks': -3 is below the minimum 0"):
        read_status(path)
    StatusWriter(path).write({**_status(), "schema_version": 2})
    with pytest.raises(StatusFileError, match="newer than this jetpolicy reads") as info:
        read_status(path)
    assert "runtime/current/bin/jetpolicy" in info.value.fix


def test_history_line_off_the_schema_is_passed_over_and_named(tmp_path: Path) -> None:
    """A JSON object that is not a history record is skipped like a torn line, and `release show`'s
    problems say which line and field; the rollback still works."""
    _history(tmp_path)
    with (tmp_path / "history.jsonl").open("a") as handle:
        handle.write('{"action": "jump", "from": "a", "to": "b"}\n{"to')
    read = releases.read_history_checked(tmp_path)
    assert len(read.records) == 2 and len(read.unreadable) == 2 and not read.newer
    assert "line 3: field 'action': expected one of" in read.unreadable[0]
    assert "line 4: not a JSON object" in read.unreadable[1]
    assert releases.rollback_target(tmp_path) == "a"


def test_history_of_a_newer_jetpolicy_blocks_rollback_and_prune(tmp_path: Path) -> None:
    """A record of a newer schema_version may be the switch into the current deployment: the rollback
    refuses to guess past it, and prune keeps every release rather than guess which one it needs."""
    _history(tmp_path)
    with (tmp_path / "history.jsonl").open("a") as handle:
        handle.write('{"schema_version": 2, "what": "new"}\n')
    with pytest.raises(releases.HistoryVersionError, match="line 3: 'schema_version' is 2") as info:
        releases.rollback(tmp_path, "gate failed")
    assert "newer jetpolicy" in info.value.fix
    with pytest.raises(releases.HistoryVersionError):
        releases.prune_releases(tmp_path, keep=1)
    assert sorted(p.name for p in (tmp_path / "releases").iterdir()) == ["a", "b"]


def test_report_read_back_checks_the_schema(tmp_path: Path) -> None:
    """report.json with a host entry off the schema is a RecordError naming the file and the field."""
    report = _report()
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert read_summary(tmp_path).hosts == {"jetson-1": "rolled_back", "jetson-2": "unreachable"}
    report["hosts"][1]["stats"] = {"unreachable": "1"}
    (tmp_path / "report.json").write_text(json.dumps(report))
    with pytest.raises(RecordError) as info:
        read_summary(tmp_path)
    assert info.value.field == "hosts[1].stats.unreachable"
    assert str(tmp_path / "report.json") in str(info.value)
    (tmp_path / "report.json").write_text(json.dumps({**_report(), "schema_version": 2}))
    with pytest.raises(RecordError, match="newer than this jetpolicy reads"):
        read_summary(tmp_path)
