"""The miss policy (docs/miss-policy.md): the pure state machine, its config, and the control loop
publishing what it decides, on a fake clock."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pytest
from fakeclock import MS, FakeClock

from jetpolicy.common.errors import ConfigError
from jetpolicy.common.manifest import TensorSpec
from jetpolicy.robot.config import RunnerConfig, config_from_dict
from jetpolicy.robot.miss_policy import DECAY, FRESH, HOLD, NOTHING, SAFE, MissPolicy, MissPolicyConfig
from jetpolicy.robot.runner import ControlLoop, Runner
from jetpolicy.robot.scheduler import DeadlineScheduler
from jetpolicy.robot.sdnotify import SdNotifier
from jetpolicy.robot.sources import SyntheticSource
from jetpolicy.robot.status import read_status

# K=2, M=4, N=7, R=3: the blend takes N - M + 1 = 4 missed periods, a quarter of the way each.
SMALL = MissPolicyConfig(hold_after=2, decay_after=4, safe_after=7, recover_after=3)
LATE, ON_TIME = (0, True), (0, False)

# Each step: (skipped periods before the tick, tick late?) -> (answer, state, consecutive misses).
Step = Tuple[Tuple[int, bool], Tuple[str, str, int]]
SCENARIOS: Dict[str, List[Step]] = {
    "one miss is dropped, the next on-time tick publishes": [
        (LATE, (NOTHING, "normal", 1)),
        (ON_TIME, (FRESH, "normal", 0)),
    ],
    "normal -> hold at K": [
        (LATE, (NOTHING, "normal", 1)),
        (LATE, (HOLD, "hold", 2)),
        (LATE, (HOLD, "hold", 3)),
    ],
    "hold -> decay at M, then decay -> degraded at N": [
        *[(LATE, (a, s, c)) for a, s, c in ((NOTHING, "normal", 1), (HOLD, "hold", 2), (HOLD, "hold", 3))],
        (LATE, (DECAY, "decay", 4)),
        (LATE, (DECAY, "decay", 5)),
        (LATE, (DECAY, "decay", 6)),
        (LATE, (SAFE, "degraded", 7)),
        (LATE, (SAFE, "degraded", 8)),
    ],
    "an on-time tick ends hold and decay at once": [
        *[(LATE, (a, s, c)) for a, s, c in ((NOTHING, "normal", 1), (HOLD, "hold", 2), (HOLD, "hold", 3))],
        (LATE, (DECAY, "decay", 4)),
        (ON_TIME, (FRESH, "normal", 0)),
    ],
    "degraded -> normal after R on-time ticks": [
        ((6, True), (SAFE, "degraded", 7)),
        (ON_TIME, (SAFE, "degraded", 0)),
        (ON_TIME, (SAFE, "degraded", 0)),
        (ON_TIME, (FRESH, "normal", 0)),
    ],
    "a miss while recovering starts the count of R again": [
        ((6, True), (SAFE, "degraded", 7)),
        (ON_TIME, (SAFE, "degraded", 0)),
        (ON_TIME, (SAFE, "degraded", 0)),
        (LATE, (SAFE, "degraded", 1)),
        (ON_TIME, (SAFE, "degraded", 0)),
        (ON_TIME, (SAFE, "degraded", 0)),
        (ON_TIME, (FRESH, "normal", 0)),
    ],
    "skipped periods count as misses": [
        ((2, True), (HOLD, "hold", 3)),
        ((1, True), (DECAY, "decay", 5)),
    ],
    "skipped periods then an on-time tick publish it": [
        ((3, False), (FRESH, "normal", 0)),
    ],
    "a long stall goes straight to degraded": [
        ((7, False), (SAFE, "degraded", 0)),
        (ON_TIME, (SAFE, "degraded", 0)),
        (ON_TIME, (FRESH, "normal", 0)),
    ],
}


@pytest.mark.parametrize("steps", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_transitions(steps: List[Step]) -> None:
    """Every transition of the state diagram, one tick at a time."""
    policy = MissPolicy(SMALL)
    for index, ((skipped, late), expected) in enumerate(steps):
        answer = policy.update(skipped, late)
        assert (answer, policy.state, policy.consecutive_misses) == expected, f"step {index}"
        assert policy.degraded == (policy.state == "degraded")


def test_decay_is_a_linear_blend_reaching_the_safe_action_at_n() -> None:
    """Each missed period in decay moves 1/(N - M + 1) of the way; a skip moves as many steps."""
    policy = MissPolicy(SMALL)
    blends = []
    for _ in range(6):
        if policy.update(0, True) == DECAY:
            blends.append(policy.blend)
    assert blends == [0.25, 0.5, 0.75]
    assert policy.update(0, True) == SAFE  # the fourth step is the safe action itself
    jumped = MissPolicy(SMALL)
    assert jumped.update(4, True) == DECAY and jumped.blend == 0.5  # 5 missed periods: 2 steps in


def test_entries_are_counted_and_reported() -> None:
    """Each state entered is counted; to_dict is the status file's miss_policy object."""
    policy = MissPolicy(SMALL)
    for _ in range(7):
        policy.update(0, True)
    policy.update(0, False)
    status = policy.to_dict()
    assert status["entered"] == {"hold": 1, "decay": 1, "degraded": 1}
    assert (status["state"], status["consecutive_misses"], status["on_time_streak"]) == ("degraded", 0, 1)
    assert (status["hold_after"], status["decay_after"], status["safe_after"], status["recover_after"]) == (
        2, 4, 7, 3,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param({"hold_after": 5, "decay_after": 5}, "hold_after < decay_after < safe_after", id="k=m"),
        pytest.param({"decay_after": 30}, "got 2, 30, 20", id="m>n"),
        pytest.param({"hold_after": 0}, "'hold_after' must be an integer >= 1", id="zero"),
        pytest.param({"recover_after": True}, "'recover_after' must be an integer", id="bool"),
    ],
)
def test_config_refuses_unordered_or_bad_thresholds(values: Dict[str, Any], expected: str) -> None:
    """K < M < N, all positive integers."""
    with pytest.raises(ConfigError, match=expected):
        MissPolicyConfig(**values)


@pytest.mark.parametrize(
    ("miss_policy", "expected"),
    [
        pytest.param({"hold_after": 3}, "ok", id="partial"),
        pytest.param({"hold_after": 2, "holdafter": 3}, r"unknown key\(s\) \['holdafter'\] in miss_policy",
                     id="unknown-key"),
        pytest.param({"decay_after": 25}, "runner.json: miss_policy: needs hold_after < decay_after",
                     id="order"),
        pytest.param({"safe_after": 1.5}, "'safe_after' must be an integer", id="float"),
        pytest.param([], "miss_policy must be an object", id="not-object"),
    ],
)  # fmt: skip
def test_runner_config_miss_policy(tmp_path: Path, miss_policy: Any, expected: str) -> None:
    """The runner config's miss_policy: defaults for what it leaves out, the same checks as the
    rest of the file (unknown keys refused, the file named)."""
    raw = {"release_dir": str(tmp_path), "miss_policy": miss_policy}
    if expected == "ok":
        config = config_from_dict(raw, source="runner.json")
        assert config.miss_policy == MissPolicyConfig(hold_after=3)
        return
    with pytest.raises(ConfigError, match=expected):
        config_from_dict(raw, source="runner.json")


def test_runner_config_defaults_when_absent_or_null(tmp_path: Path) -> None:
    """No miss_policy, or null (what the role renders by default): the runner's defaults."""
    for raw in ({"release_dir": str(tmp_path)}, {"release_dir": str(tmp_path), "miss_policy": None}):
        assert config_from_dict(raw).miss_policy == MissPolicyConfig()
    defaults = MissPolicyConfig()
    assert (defaults.hold_after, defaults.decay_after, defaults.safe_after, defaults.recover_after) == (
        2, 5, 20, 50,
    )  # fmt: skip


# --- The loop, on a fake clock --------------------------------------------------------------------


class ScriptedPolicy:
    """Step n takes costs_ns[n] of fake time (the last one repeats) and outputs n + 1, or NaN on
    the steps in `nan_at`; the safe action is -1."""

    backend_name = "fake"
    backend_reason = "test double"

    def __init__(self, clock: FakeClock, costs_ns: Sequence[int], nan_at: Sequence[int] = ()) -> None:
        self.observation_specs = [TensorSpec("obs", [1, 4])]
        self.action_specs = [TensorSpec("actions", [1, 2], role="action")]
        self.clock = clock
        self.costs_ns = list(costs_ns)
        self.nan_at = set(nan_at)
        self.calls = 0
        self.resets: List[int] = []  # the step count at each reset_state
        self._out = {"actions": np.zeros((1, 2), dtype=np.float32)}

    def step(self, observations: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        self.clock.work(self.costs_ns[min(self.calls, len(self.costs_ns) - 1)])
        self._out["actions"].fill(np.nan if self.calls in self.nan_at else self.calls + 1)
        self.calls += 1
        return self._out

    def safe_action(self) -> Dict[str, np.ndarray]:
        return {"actions": np.full((1, 2), -1.0, dtype=np.float32)}

    def reset_state(self) -> None:
        self.resets.append(self.calls)


class RecordingSink:
    def __init__(self) -> None:
        self.published: List[Tuple[float, bool]] = []

    def publish(self, actions: Mapping[str, np.ndarray], sequence: int, safe: bool = False) -> bool:
        self.published.append((round(float(actions["actions"][0, 0]), 4), safe))
        return True


PERIOD_MS = 10
FAST, SLOW = 1 * MS, 10 * MS + 500_000  # SLOW: ready half a millisecond after the deadline


def make_loop(
    clock: FakeClock, policy: ScriptedPolicy, config: Optional[MissPolicyConfig] = None
) -> Tuple[ControlLoop, RecordingSink]:
    scheduler = DeadlineScheduler(PERIOD_MS * 1e-3, 0.0002, now_ns=clock.now_ns, sleep_s=clock.sleep_s)
    sink = RecordingSink()
    source = SyntheticSource(policy.observation_specs, 1000.0 / PERIOD_MS)
    loop = ControlLoop(policy, scheduler, source, sink, 5, clock_ns=clock.now_ns, miss_policy=config)
    scheduler.start(first_release_ns=10 * MS)
    return loop, sink


def test_loop_holds_decays_then_degrades_and_recovers() -> None:
    """Three on-time ticks, six late ones, two on time (K=2, M=4, N=6, R=2): the late results are
    never published; what goes out instead is nothing, the held action, a linear decay toward the
    safe action and the safe action, until two on-time ticks hand control back."""
    clock = FakeClock()
    policy = ScriptedPolicy(clock, [FAST] * 3 + [SLOW] * 6 + [FAST])
    config = MissPolicyConfig(hold_after=2, decay_after=4, safe_after=6, recover_after=2)
    loop, sink = make_loop(clock, policy, config)
    states = []
    for _ in range(11):
        timing = loop.tick()
        states.append(loop.miss_policy.state)
        assert timing.skipped == 0  # every late tick here is late by its work alone
    # Decay from the held 3 to the safe -1 in N - M + 1 = 3 steps: 3 - 4/3, 3 - 8/3, then -1.
    assert sink.published == [
        (1.0, False), (2.0, False), (3.0, False),  # on time
        (3.0, False), (3.0, False),  # tick 4 (1 miss) publishes nothing; 5 and 6 hold
        (1.6667, False), (0.3333, False),  # ticks 7 and 8 decay
        (-1.0, True),  # tick 9: 6 misses, the safe action, degraded
        (-1.0, True),  # tick 10 on time: 1 of 2 to recover
        (11.0, False),  # tick 11 on time: recovered, its own fresh action
    ]  # fmt: skip
    assert states == ["normal"] * 4 + ["hold"] * 2 + ["decay"] * 2 + ["degraded"] * 2 + ["normal"]
    assert loop.late_actions_dropped == 6
    assert loop.miss_policy.entered == {"hold": 1, "decay": 1, "degraded": 1}
    assert loop.scheduler.missed_deadlines == 6


def test_late_action_is_not_published() -> None:
    """An action ready after its tick's deadline never goes out, even the first one."""
    clock = FakeClock()
    policy = ScriptedPolicy(clock, [FAST, SLOW, FAST])
    loop, sink = make_loop(clock, policy)
    for _ in range(3):
        loop.tick()
    assert sink.published == [(1.0, False), (3.0, False)]  # step 2 was late: dropped, nothing sent
    assert loop.late_actions_dropped == 1


def test_nonfinite_output_publishes_safe_and_resets_state() -> None:
    """NaN from the policy: the safe action, a counter, and the recurrent state reset once; the
    next finite output is published again."""
    clock = FakeClock()
    policy = ScriptedPolicy(clock, [FAST], nan_at=[1])
    loop, sink = make_loop(clock, policy)
    for _ in range(3):
        loop.tick()
    assert sink.published == [(1.0, False), (-1.0, True), (3.0, False)]
    assert loop.nonfinite_outputs == 1 and policy.resets == [2]
    assert loop.safe_actions == 1 and loop.late_actions_dropped == 0


@pytest.mark.parametrize(
    ("stall_ms", "skipped", "published", "state"),
    [
        # Preempted 25 ms while sleeping: two releases pass unrun, then an on-time tick publishes.
        pytest.param(25, 2, [(1.0, False), (2.0, False)], "normal", id="short-stall"),
        # 65 ms: six releases unrun (N = 6): the on-time tick after it commands the safe action.
        pytest.param(65, 6, [(1.0, False), (-1.0, True)], "degraded", id="long-stall"),
    ],
)
def test_skipped_periods_count_as_missed_deadlines(
    stall_ms: int, skipped: int, published: List[Tuple[float, bool]], state: str
) -> None:
    """Skipped releases count in the miss rate and in the miss policy's consecutive misses."""
    clock = FakeClock(stalls={1: stall_ms * MS})
    policy = ScriptedPolicy(clock, [FAST])
    config = MissPolicyConfig(hold_after=2, decay_after=4, safe_after=6, recover_after=2)
    loop, sink = make_loop(clock, policy, config)
    loop.tick()
    timing = loop.tick()
    assert timing.skipped == skipped
    assert sink.published == published
    assert loop.miss_policy.state == state
    sched = loop.scheduler
    assert (sched.ticks, sched.deadline_misses, sched.missed_deadlines) == (2, 0, skipped)
    assert sched.deadline_miss_rate == skipped / (2 + skipped)


def test_runner_reports_degraded_in_status_metrics_and_sd_notify(tmp_path: Path) -> None:
    """A policy too slow for 0.1 s, then fast: the runner says `degraded` at once (status file,
    Prometheus, sd_notify STATUS=degraded: ...) and `running` again after R on-time ticks."""
    clock = FakeClock()
    policy = ScriptedPolicy(clock, [1_500_000] * 70 + [100_000])  # at 1 kHz: 1.5 ms, then 0.1 ms
    scheduler = DeadlineScheduler(0.001, 0.0002, now_ns=clock.now_ns, sleep_s=clock.sleep_s)
    source = SyntheticSource(policy.observation_specs, 1000.0)
    loop = ControlLoop(policy, scheduler, source, RecordingSink(), 5, clock_ns=clock.now_ns)
    status_file, metrics_file = tmp_path / "status.json", tmp_path / "jetpolicy.prom"
    config = RunnerConfig(release_dir=tmp_path, status_file=status_file, metrics_file=metrics_file,
                          status_interval_s=0.2, watchdog=False)  # fmt: skip
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        listener.setblocking(False)
        runner = Runner(config, duration_s=0.6)
        runner.notifier = SdNotifier({"NOTIFY_SOCKET": address})
        degraded_status: List[Dict[str, Any]] = []
        degraded_metrics: List[str] = []
        write = runner.writer.write

        def spy(status: Mapping[str, Any]) -> bool:
            if status["miss_policy"]["state"] == "degraded":
                degraded_status.append(dict(status))
                if not degraded_metrics:
                    ok = write(status)
                    degraded_metrics.append(metrics_file.read_text())
                    return ok
            return write(status)

        runner.writer.write = spy  # type: ignore[method-assign]
        assert runner.serve(loop, 1000.0) == 0
        messages = []
        while True:
            try:
                messages.append(listener.recv(4096).decode())
            except BlockingIOError:
                break
    statuses = [m.split("STATUS=", 1)[1] for m in messages if "STATUS=" in m]
    first_degraded = next(i for i, s in enumerate(statuses) if s.startswith("degraded: "))
    assert "safe action after 20 missed deadlines in a row" in statuses[first_degraded]
    assert any(s.startswith("running: ") for s in statuses[first_degraded:]), statuses
    assert degraded_status and degraded_status[0]["state"] == "running"  # alive, but not steering
    assert "jetpolicy_degraded 1" in degraded_metrics[0]
    assert 'jetpolicy_miss_policy_state{state="degraded"} 1' in degraded_metrics[0]
    final = read_status(status_file)
    assert final is not None and final["miss_policy"]["state"] == "normal"
    assert final["miss_policy"]["entered"]["degraded"] == 1
    assert final["late_actions_dropped"] == 70
    assert "jetpolicy_degraded 0" in metrics_file.read_text()


class ListSource:
    """Yields the given observations one per poll, then the last one again."""

    def __init__(self, observations: List[Dict[str, np.ndarray]]) -> None:
        self.observations = observations
        self.polls = 0

    def poll(self) -> Optional[Dict[str, np.ndarray]]:
        observation = self.observations[min(self.polls, len(self.observations) - 1)]
        self.polls += 1
        return observation

    def close(self) -> None:
        pass


def test_nan_in_a_real_recurrent_policy_is_cleared_by_the_reset(recurrent_release: Path) -> None:
    """A real recurrent policy (ONNX Runtime) fed one NaN observation: that tick publishes the safe
    action, and the reset clears the NaN the model wrote into its state, so the next finite
    observation gives a finite action again (without the reset every later tick is NaN)."""
    from jetpolicy.robot.policy import load_policy

    policy = load_policy(recurrent_release, backend="onnxruntime")
    try:
        spec = policy.observation_specs[0]
        finite = {spec.name: np.full(spec.shape, 0.5, dtype=np.float32)}
        poisoned = {spec.name: np.full(spec.shape, np.nan, dtype=np.float32)}
        clock = FakeClock()
        scheduler = DeadlineScheduler(0.02, 0.0002, now_ns=clock.now_ns, sleep_s=clock.sleep_s)
        sink = RecordingSink()
        source = ListSource([finite, poisoned, finite, finite])
        loop = ControlLoop(policy, scheduler, source, sink, 5, clock_ns=clock.now_ns)
        for _ in range(4):
            loop.tick()
        safe_value = round(float(policy.safe_action()[policy.action_specs[0].name][0, 0]), 4)
        assert [safe for _, safe in sink.published] == [False, True, False, False]
        assert sink.published[1][0] == safe_value
        assert all(np.isfinite(value) for value, _ in sink.published)
        assert loop.nonfinite_outputs == 1
        # The tick after the reset starts from a zero state, as the first tick did.
        assert sink.published[2][0] == sink.published[0][0]
    finally:
        policy.close()
