"""`jetpolicy import`: an existing ONNX plus an Isaac Lab / unitree_rl_gym deploy config to a release.

The configs in tests/data mirror real files (each names its source); the ONNX models are made here
with the real policies' input/output names and shapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest
import yaml

from jetpolicy import __version__
from jetpolicy.cli import main
from jetpolicy.common.errors import BackendError, JetpolicyError, ManifestError, PolicyValidationError
from jetpolicy.common.manifest import load_manifest, sha256_file
from jetpolicy.controller.deploy_config import UNBOUNDED, DeployConfigError, read_yaml
from jetpolicy.controller.importer import PolicyImportError, import_policy, parse_state_arg
from jetpolicy.controller.validation import validate_policy
from jetpolicy.robot.policy import load_policy

DATA = Path(__file__).parent / "data"
ISAACLAB_G1 = DATA / "isaaclab_g1_deploy.yaml"
UNITREE_G1 = DATA / "unitree_g1_mujoco.yaml"
UNITREE_GO2 = DATA / "unitree_go2_mujoco.yaml"
UNITREE_H1_REAL = DATA / "unitree_h1_real.yaml"


def make_onnx(
    path: Path,
    obs: int,
    act: int,
    obs_name: str = "obs",
    act_name: str = "actions",
    extra_input: Optional[str] = None,
    state: Optional[Tuple[str, str, int]] = None,
    batch: Any = 1,
    shapeless_output: bool = False,
) -> Path:
    """obs [batch, obs] -> actions [batch, act] through a zero MatMul, so every raw action is 0."""
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("W", TensorProto.FLOAT, [obs, act], [0.0] * (obs * act))
    inputs = [helper.make_tensor_value_info(obs_name, TensorProto.FLOAT, [batch, obs])]
    # Some exporters leave output shapes out; ONNX Runtime infers them, onnx's checker refuses them.
    act_shape = None if shapeless_output else [batch, act]
    outputs = [helper.make_tensor_value_info(act_name, TensorProto.FLOAT, act_shape)]
    nodes = [helper.make_node("MatMul", [obs_name, "W"], [act_name])]
    if extra_input is not None:
        inputs.append(helper.make_tensor_value_info(extra_input, TensorProto.FLOAT, [1, 2]))
        outputs.append(helper.make_tensor_value_info(extra_input + "_echo", TensorProto.FLOAT, [1, 2]))
        nodes.append(helper.make_node("Identity", [extra_input], [extra_input + "_echo"]))
    if state is not None:
        state_in, state_out, width = state
        inputs.append(helper.make_tensor_value_info(state_in, TensorProto.FLOAT, [1, width]))
        outputs.append(helper.make_tensor_value_info(state_out, TensorProto.FLOAT, [1, width]))
        nodes.append(helper.make_node("Identity", [state_in], [state_out]))
    graph = helper.make_graph(nodes, "policy", inputs, outputs, initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    if not shapeless_output:
        onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_config(path: Path, source: Path, change: Callable[[Dict[str, Any]], None]) -> Path:
    """A copy of a data config with `change` applied (Isaac Lab's joint_ids slice becomes 'all')."""
    raw = read_yaml(source)
    for term in raw.get("actions", {}).values():
        if isinstance(term.get("joint_ids"), slice):
            term["joint_ids"] = None
    change(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def test_end_to_end_isaaclab_g1(tmp_path: Path) -> None:
    """Import -> validate passes -> manifest has rate, scaling, safe action (the default pose), layout;
    the robot side loads it, holds the default pose when stale, and maps raw 0 to the default pose."""
    model = make_onnx(tmp_path / "src" / "policy.onnx", obs=480, act=29)
    before = model.read_bytes()
    out = tmp_path / "g1_velocity"
    result = import_policy(model, out, deploy_config=ISAACLAB_G1)

    manifest = validate_policy(out / "policy.onnx", out / "policy.json")
    assert manifest == result.manifest == load_manifest(out / "policy.json")
    assert model.read_bytes() == before and (out / "policy.onnx").read_bytes() == before
    assert manifest.sha256 == sha256_file(model)
    assert manifest.name == "g1_velocity"
    assert manifest.control_rate_hz == pytest.approx(50.0)
    assert [(s.name, s.shape, s.dtype) for s in manifest.inputs] == [("obs", [1, 480], "float32")]
    assert [(s.name, s.shape, s.dtype) for s in manifest.outputs] == [("actions", [1, 29], "float32")]
    default = read_yaml(ISAACLAB_G1)["default_joint_pos"]
    transform = manifest.action["actions"]
    assert transform.scale == [0.25] * 29
    assert transform.offset == default
    assert transform.low is None and transform.high is None
    assert manifest.safe_action["actions"] == default
    layout = manifest.observation_layout["obs"]
    assert [(t.name, t.width, t.history) for t in layout] == [
        ("base_ang_vel", 3, 5),
        ("projected_gravity", 3, 5),
        ("velocity_commands", 3, 5),
        ("joint_pos_rel", 29, 5),
        ("joint_vel_rel", 29, 5),
        ("last_action", 29, 5),
    ]
    assert layout[0].scale == [0.2, 0.2, 0.2] and layout[4].scale == [0.05] * 29
    assert f"jetpolicy {__version__} import of {model.resolve()}" in manifest.created_by
    assert f"isaaclab deploy config {ISAACLAB_G1.resolve()}" in manifest.created_by
    assert any("joint_ids_map" in note for note in result.notes)

    policy = load_policy(out, backend="onnxruntime")
    try:
        np.testing.assert_allclose(policy.safe_action()["actions"][0], default, rtol=0, atol=1e-7)
        stepped = policy.step({"obs": np.zeros((1, 480), np.float32)})["actions"][0]
        np.testing.assert_allclose(stepped, default, rtol=0, atol=1e-7)
    finally:
        policy.close()


def test_cli_import_then_validate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command table runs `import` (format forced), and `validate --json` gives what deploy reads."""
    model = make_onnx(tmp_path / "exported" / "policy.onnx", obs=47, act=12)
    out = tmp_path / "release"
    args = [
        "import",
        str(model),
        "--out",
        str(out),
        "--deploy-config",
        str(UNITREE_G1),
        "--format",
        "unitree",
    ]
    assert main([*args, "--name", "g1-legs"]) == 0
    assert "50 Hz" in capsys.readouterr().out
    assert (
        main(
            [
                "validate",
                "--model",
                str(out / "policy.onnx"),
                "--manifest",
                str(out / "policy.json"),
                "--json",
            ]
        )
        == 0
    )
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["valid"] and verdict["name"] == "g1-legs" and verdict["sha256"] == sha256_file(model)
    assert json.loads((out / "policy.json").read_text())["control_rate_hz"] == 50.0


@pytest.mark.parametrize(
    ("config", "obs", "act", "first_terms", "command_scale"),
    [
        (UNITREE_G1, 47, 12, ["base_ang_vel", "projected_gravity", "velocity_command"], [2.0, 2.0, 0.25]),
        (UNITREE_GO2, 48, 12, ["base_lin_vel", "base_ang_vel", "projected_gravity"], [2.0, 2.0, 0.25]),
        (
            UNITREE_H1_REAL,
            41,
            10,
            ["base_ang_vel", "projected_gravity", "velocity_command"],
            [2.0, 2.0, 0.25],
        ),
    ],
    ids=["g1-mujoco", "go2-mujoco", "h1-real-control_dt"],
)
def test_unitree_configs(
    tmp_path: Path, config: Path, obs: int, act: int, first_terms: List[str], command_scale: List[float]
) -> None:
    """unitree_rl_gym: 50 Hz from either period form, target = raw * action_scale + default_angles,
    safe action = default_angles, and the deploy script's observation order with its scales."""
    model = make_onnx(tmp_path / "policy.onnx", obs=obs, act=act)
    manifest = import_policy(model, tmp_path / "out", deploy_config=config).manifest
    validate_policy(tmp_path / "out" / "policy.onnx", tmp_path / "out" / "policy.json")
    raw = read_yaml(config)
    assert manifest.control_rate_hz == pytest.approx(50.0)
    assert manifest.action["actions"].scale == [raw["action_scale"]] * act
    assert manifest.action["actions"].offset == [float(v) for v in raw["default_angles"]]
    assert manifest.safe_action["actions"] == [float(v) for v in raw["default_angles"]]
    layout = manifest.observation_layout["obs"]
    assert [t.name for t in layout[:3]] == first_terms
    assert sum(t.size for t in layout) == obs
    by_name = {t.name: t for t in layout}
    assert by_name["velocity_command"].scale == command_scale
    assert by_name["joint_vel"].scale == [raw["dof_vel_scale"]] * act
    assert by_name["base_ang_vel"].scale == [raw["ang_vel_scale"]] * 3


def test_unitree_unknown_layout_is_a_note_not_an_error(tmp_path: Path) -> None:
    """A num_obs no deploy script builds (a 29-dof G1 fork's 96) imports without a layout, with a note."""
    config = write_config(
        tmp_path / "g1_29.yaml",
        UNITREE_G1,
        lambda raw: raw.update(
            num_actions=29, num_obs=96, default_angles=[0.0] * 29, kps=[1] * 29, kds=[1] * 29
        ),
    )
    result = import_policy(make_onnx(tmp_path / "m.onnx", 96, 29), tmp_path / "out", deploy_config=config)
    assert result.manifest.observation_layout == {}
    assert result.manifest.safe_action["actions"] == [0.0] * 29
    assert any("num_obs 96" in note for note in result.notes)


def test_isaaclab_clip_becomes_limits_and_rate_from_sim_dt(tmp_path: Path) -> None:
    """Per-joint clip pairs become low/high (applied after scale + offset, as in Isaac Lab), and
    sim.dt x decimation gives the rate when step_dt is absent."""

    def change(raw: Dict[str, Any]) -> None:
        del raw["step_dt"]
        raw.update(sim={"dt": 0.005}, decimation=4)
        raw["actions"]["JointPositionAction"]["clip"] = [[-2.0, 2.0]] * 29

    config = write_config(tmp_path / "deploy.yaml", ISAACLAB_G1, change)
    manifest = import_policy(
        make_onnx(tmp_path / "m.onnx", 480, 29), tmp_path / "out", deploy_config=config
    ).manifest
    assert manifest.control_rate_hz == pytest.approx(50.0)
    assert manifest.action["actions"].low == [-2.0] * 29
    assert manifest.action["actions"].high == [2.0] * 29


def test_isaaclab_two_action_terms_concatenate(tmp_path: Path) -> None:
    """Terms are concatenated in file order; joint_ids pick each term's default pose; an unclipped
    term next to a clipped one is bounded by float32's largest value (JSON has no infinity)."""

    def change(raw: Dict[str, Any]) -> None:
        default = raw["default_joint_pos"]
        raw["actions"] = {
            "legs": {"scale": 0.5, "offset": [0.0] * 12, "joint_ids": list(range(12)), "clip": None},
            "arms": {
                "scale": [0.25] * 17,
                "offset": default[12:],
                "joint_ids": list(range(12, 29)),
                "clip": [[-3.0, 3.0]] * 17,
            },
        }

    config = write_config(tmp_path / "deploy.yaml", ISAACLAB_G1, change)
    manifest = import_policy(
        make_onnx(tmp_path / "m.onnx", 480, 29), tmp_path / "out", deploy_config=config
    ).manifest
    default = read_yaml(ISAACLAB_G1)["default_joint_pos"]
    transform = manifest.action["actions"]
    assert transform.scale == [0.5] * 12 + [0.25] * 17
    assert transform.offset == [0.0] * 12 + default[12:]
    assert transform.low == [-UNBOUNDED] * 12 + [-3.0] * 17
    # The legs' offset is 0, so their raw action for the default pose would be default / 0.5; the
    # safe action is published as-is, so it is the default pose itself.
    assert manifest.safe_action["actions"] == default


def test_recurrent_state_with_config(tmp_path: Path) -> None:
    """--state pairs are excluded from the observation/action the config describes."""
    model = make_onnx(tmp_path / "m.onnx", 47, 12, state=("h_in", "h_out", 8))
    manifest = import_policy(
        model, tmp_path / "out", deploy_config=UNITREE_G1, state=[parse_state_arg("h_in:h_out")]
    ).manifest
    assert manifest.state[0].input == "h_in" and manifest.input("h_in").role == "state"
    assert list(manifest.observation_layout) == ["obs"]


def test_import_without_config_needs_rate(tmp_path: Path) -> None:
    """Without a config the rate is --rate-hz, and no transform, safe action or layout is invented."""
    model = make_onnx(tmp_path / "m.onnx", 48, 12, obs_name="observations", act_name="mu")
    manifest = import_policy(model, tmp_path / "out", rate_hz=200.0, name="plain").manifest
    assert manifest.control_rate_hz == 200.0
    assert [s.name for s in manifest.inputs] == ["observations"] and manifest.outputs[0].name == "mu"
    assert not manifest.action and not manifest.safe_action and not manifest.observation_layout
    assert manifest.created_by == f"jetpolicy {__version__} import of {model.resolve()}"


def _set(path: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    def change(raw: Dict[str, Any]) -> None:
        node = raw
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return change


def _delete(key: str) -> Callable[[Dict[str, Any]], None]:
    return lambda raw: raw.pop(key)


UNI, ISA = UNITREE_G1, ISAACLAB_G1
JPA = "actions.JointPositionAction"
CONFIG_ERRORS = [
    # (id, source config, change, model obs, model act, expected text; {cfg} is the config path)
    (
        "num_actions-vs-model",
        UNI,
        None,
        47,
        19,
        "deploy config {cfg} says num_actions 12 but policy.onnx output 'actions' has 19 values",
    ),
    (
        "num_obs-vs-model",
        UNI,
        None,
        45,
        12,
        "deploy config {cfg} says num_obs 47 but policy.onnx input 'obs' has 45 values",
    ),
    (
        "isaaclab-actions-vs-model",
        ISA,
        None,
        480,
        12,
        "says actions (JointPositionAction: 29) add up to 29 but policy.onnx output 'actions' has 12 values",
    ),
    (
        "isaaclab-obs-vs-model",
        ISA,
        _set("observations.base_ang_vel.history_length", 4),
        480,
        29,
        "says observations (width x history_length) add up to 477 but policy.onnx input 'obs' has 480 values",
    ),
    (
        "unitree-rate-negative",
        UNI,
        _set("simulation_dt", -0.002),
        47,
        12,
        "simulation_dt -0.002 x control_decimation 10 gives a control period of -0.02 s, "
        "so the control rate is not positive",
    ),
    ("unitree-decimation-zero", UNI, _set("control_decimation", 0), 47, 12, "control rate is not positive"),
    (
        "unitree-real-control_dt-zero",
        UNITREE_H1_REAL,
        _set("control_dt", 0),
        41,
        10,
        "control_dt 0 gives a control period of 0 s",
    ),
    ("isaaclab-step_dt-zero", ISA, _set("step_dt", 0.0), 480, 29, "step_dt 0 gives a control period of 0 s"),
    (
        "unitree-periods-disagree",
        UNI,
        _set("control_dt", 0.01),
        47,
        12,
        "control_dt 0.01 = 0.01 s but simulation_dt 0.002 x control_decimation 10 = 0.02 s",
    ),
    (
        "isaaclab-periods-disagree",
        ISA,
        lambda r: r.update(sim={"dt": 0.005}, decimation=2),
        480,
        29,
        "step_dt 0.02 = 0.02 s but sim.dt 0.005 x decimation 2 = 0.01 s",
    ),
    (
        "no-period",
        UNI,
        lambda r: (r.pop("simulation_dt"), r.pop("control_decimation")),
        47,
        12,
        "gives no control period",
    ),
    (
        "decimation-not-int",
        UNI,
        _set("control_decimation", 2.5),
        47,
        12,
        "'control_decimation' must be an integer",
    ),
    (
        "default_angles-length",
        UNI,
        _set("default_angles", [0.0] * 11),
        47,
        12,
        "'default_angles' has 11 values but num_actions 12 needs 12",
    ),
    ("kps-length", UNI, _set("kps", [100] * 13), 47, 12, "'kps' has 13 values but num_actions 12 needs 12"),
    ("action_scale-length", UNI, _set("action_scale", [0.25] * 10), 47, 12, "'action_scale' has 10 values"),
    (
        "cmd_scale-length",
        UNI,
        _set("cmd_scale", [2.0, 2.0]),
        47,
        12,
        "'cmd_scale' has 2 values but observation term velocity_command (3 values) needs 3",
    ),
    (
        "scale-not-number",
        UNI,
        _set("dof_vel_scale", "fast"),
        47,
        12,
        "'dof_vel_scale' must be a number or a list of numbers, got 'fast'",
    ),
    (
        "scale-not-finite",
        UNI,
        _set("action_scale", float("nan")),
        47,
        12,
        "'action_scale' must be a finite number",
    ),
    ("missing-num_obs", UNI, _delete("num_obs"), 47, 12, "(unitree) has no 'num_obs'"),
    (
        "num_actions-not-int",
        UNI,
        _set("num_actions", "twelve"),
        47,
        12,
        "'num_actions' must be a positive integer",
    ),
    (
        "isaaclab-scale-length",
        ISA,
        _set(f"{JPA}.scale", [0.25] * 28),
        480,
        29,
        f"'{JPA}.scale' has 28 values but {JPA} (29 joints) needs 29",
    ),
    (
        "isaaclab-offset-length",
        ISA,
        _set(f"{JPA}.offset", [0.0] * 30),
        480,
        29,
        f"'{JPA}.offset' has 30 values",
    ),
    (
        "isaaclab-clip-length",
        ISA,
        _set(f"{JPA}.clip", [[-1.0, 1.0]] * 3),
        480,
        29,
        f"'{JPA}.clip' has 3 entries but the term drives 29 joints",
    ),
    ("isaaclab-clip-inverted", ISA, _set(f"{JPA}.clip", [[1.0, -1.0]] * 29), 480, 29, "has low > high"),
    ("isaaclab-clip-not-pair", ISA, _set(f"{JPA}.clip", [[1.0]] * 29), 480, 29, "is not [low, high]"),
    (
        "isaaclab-stiffness-length",
        ISA,
        _set("stiffness", [1.0] * 12),
        480,
        29,
        "'stiffness' has 12 values but default_joint_pos (29 joints) needs 29",
    ),
    (
        "isaaclab-joint_ids-range",
        ISA,
        _set(f"{JPA}.joint_ids", [0, 40]),
        480,
        29,
        "names joints [40] but default_joint_pos has 29",
    ),
    (
        "isaaclab-joint_ids-kind",
        ISA,
        _set(f"{JPA}.joint_ids", "all"),
        480,
        29,
        "must be a slice or a list of indices",
    ),
    (
        "isaaclab-obs-scale-scalar",
        ISA,
        _set("observations.base_ang_vel.scale", 0.2),
        480,
        29,
        "'observations.base_ang_vel.scale' must list one scale per element",
    ),
    (
        "isaaclab-history-negative",
        ISA,
        _set("observations.base_ang_vel.history_length", -1),
        480,
        29,
        "'observations.base_ang_vel.history_length' must be a non-negative integer",
    ),
    (
        "isaaclab-obs-clip-inverted",
        ISA,
        _set("observations.base_ang_vel.clip", [5.0, -5.0]),
        480,
        29,
        "clip' has low > high",
    ),
    ("isaaclab-no-actions", ISA, _set("actions", {}), 480, 29, "'actions' must map action terms"),
    ("isaaclab-no-observations", ISA, _delete("observations"), 480, 29, "(isaaclab) has no 'observations'"),
    (
        "default-pose-outside-clip",
        ISA,
        _set(f"{JPA}.clip", [[0.0, 1.0]] * 29),
        480,
        29,
        "default pose of joint 0 (-0.1) is outside its action clip [0, 1] (6 joints in all)",
    ),
    (
        "both-format-keys",
        UNI,
        _set("default_joint_pos", [0.0] * 12),
        47,
        12,
        "has both 'default_joint_pos' (isaaclab) and 'default_angles' (unitree); "
        "fix: force one with --format",
    ),
    (
        "env-yaml",
        ISA,
        lambda r: (r.pop("default_joint_pos"), r.update(sim={"dt": 0.005}, decimation=4, scene={})),
        480,
        29,
        "has neither 'default_joint_pos' (isaaclab) nor 'default_angles' (unitree); fix: this looks like "
        "Isaac Lab's params/env.yaml",
    ),
]


@pytest.mark.parametrize(
    ("source", "change", "obs", "act", "expected"),
    [case[1:] for case in CONFIG_ERRORS],
    ids=[case[0] for case in CONFIG_ERRORS],
)
def test_config_errors(
    tmp_path: Path,
    source: Path,
    change: Optional[Callable[[Dict[str, Any]], None]],
    obs: int,
    act: int,
    expected: str,
) -> None:
    """Each disagreement (in the config, or between config and model) is an error naming the numbers
    and the file, and nothing is written."""
    config = write_config(tmp_path / "config.yaml", source, change) if change else source
    model = make_onnx(tmp_path / "src" / "policy.onnx", obs, act)
    out = tmp_path / "out"
    with pytest.raises(DeployConfigError) as caught:
        import_policy(model, out, deploy_config=config)
    assert expected.format(cfg=config) in str(caught.value)
    assert str(config) in caught.value.cause
    assert not out.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- 1\n- 2\n", "must be a YAML mapping, got list"),
        ("num_obs: [1, 2\n", "is not readable YAML"),
        ("cmd: !!python/object/apply:os.system [echo hi]\n", "is not readable YAML"),
    ],
    ids=["not-a-mapping", "syntax", "python-tag-refused"],
)
def test_unreadable_configs(tmp_path: Path, text: str, expected: str) -> None:
    """YAML that is not a mapping, broken, or asks to run code is refused with the file named."""
    config = tmp_path / "bad.yaml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(DeployConfigError) as caught:
        import_policy(make_onnx(tmp_path / "m.onnx", 47, 12), tmp_path / "out", deploy_config=config)
    assert expected in caught.value.cause and str(config) in caught.value.cause


def test_forced_format_reads_the_other_formats_keys(tmp_path: Path) -> None:
    """--format overrides detection: an Isaac Lab file read as unitree lacks unitree's keys."""
    model = make_onnx(tmp_path / "m.onnx", 480, 29)
    with pytest.raises(DeployConfigError, match="gives no control period"):
        import_policy(model, tmp_path / "out", deploy_config=ISAACLAB_G1, fmt="unitree")
    with pytest.raises(DeployConfigError, match="unknown deploy config format 'mjx'"):
        import_policy(model, tmp_path / "out", deploy_config=ISAACLAB_G1, fmt="mjx")


def _missing_model(tmp: Path) -> Dict[str, Any]:
    return {"model": tmp / "nope.onnx", "rate_hz": 50.0}


IMPORT_ERRORS: List[Tuple[str, Callable[[Path], Dict[str, Any]], type, str]] = [
    ("missing-model", _missing_model, PolicyImportError, "nope.onnx does not exist"),
    (
        "missing-config",
        lambda t: {"deploy_config": t / "absent.yaml"},
        DeployConfigError,
        "cannot read deploy config",
    ),
    ("no-rate", lambda t: {}, PolicyImportError, "no control rate"),
    (
        "rate-and-config",
        lambda t: {"deploy_config": UNITREE_G1, "rate_hz": 50.0},
        PolicyImportError,
        "--rate-hz and --deploy-config both give the control rate",
    ),
    (
        "format-without-config",
        lambda t: {"fmt": "unitree", "rate_hz": 50.0},
        PolicyImportError,
        "--format needs --deploy-config",
    ),
    (
        "two-observation-inputs",
        lambda t: {"deploy_config": UNITREE_G1, "extra_input": "phase"},
        PolicyImportError,
        "a deploy config describes one observation input, but policy.onnx has 2: ['obs', 'phase']",
    ),
    ("dynamic-batch", lambda t: {"rate_hz": 50.0, "batch": "batch"}, BackendError, "has dynamic dimensions"),
]


@pytest.mark.parametrize(
    ("arguments", "error", "expected"), [c[1:] for c in IMPORT_ERRORS], ids=[c[0] for c in IMPORT_ERRORS]
)
def test_import_errors(
    tmp_path: Path, arguments: Callable[[Path], Dict[str, Any]], error: type, expected: str
) -> None:
    """Arguments and models the import cannot use are refused before anything is written."""
    kwargs = arguments(tmp_path)
    onnx_kwargs = {k: kwargs.pop(k) for k in ("extra_input", "batch") if k in kwargs}
    model = kwargs.pop("model", None) or make_onnx(tmp_path / "src" / "policy.onnx", 47, 12, **onnx_kwargs)
    out = tmp_path / "out"
    with pytest.raises(error) as caught:
        import_policy(model, out, **kwargs)
    assert isinstance(caught.value, JetpolicyError) and expected in caught.value.cause
    assert not out.exists()


def test_bad_state_argument() -> None:
    with pytest.raises(PolicyImportError, match="write INPUT:OUTPUT"):
        parse_state_arg("h_in")


def test_release_the_validator_refuses_is_removed(tmp_path: Path) -> None:
    """An output without a declared shape loads in ONNX Runtime (which infers [1, 12]) but fails
    `jetpolicy validate`: the import fails with the validator's problems and leaves no release."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("unrelated")
    model = make_onnx(tmp_path / "m.onnx", 47, 12, shapeless_output=True)
    with pytest.raises(PolicyValidationError) as caught:
        import_policy(model, out, rate_hz=50.0)
    assert "output 'actions' has rank 0 in the model, 2 in the manifest" in caught.value.problems
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_manifest_refusal_writes_nothing(tmp_path: Path) -> None:
    """A state pair naming no tensor is refused by the manifest check before any file is written."""
    model = make_onnx(tmp_path / "m.onnx", 47, 12, state=("h_in", "h_out", 8))
    out = tmp_path / "out"
    with pytest.raises(ManifestError, match="state pair h_in -> nope names a tensor that does not exist"):
        import_policy(model, out, rate_hz=50.0, state=[("h_in", "nope")])
    assert not out.exists()
