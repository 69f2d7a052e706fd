"""`jetpolicy window`: the live runner's own statistics over a window, on a fake clock and a fake
status writer; a window it cannot vouch for (another process, another release, no live status,
too few ticks) is refused with a cause and a fix."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from fake_proc import fake_proc_tree

from jetpolicy.cli import main
from jetpolicy.robot.runner import loop_metrics
from jetpolicy.robot.stats import LatencyHistogram, bucket_edges_us
from jetpolicy.robot.status import StatusWriter
from jetpolicy.robot.window import (
    NO_LIVE_INPUT_EXIT,
    ConditionSampler,
    NoLiveInputError,
    WindowError,
    measure_window,
)

NOW = 1_700_000_000.0
RELEASE = "3f2a9c1d0b7e4a55"
RUNTIME = "/opt/jetpolicy/runtime/0.4.0"
COUNTERS = ("ticks", "deadline_misses", "skipped_periods", "overruns", "stale_ticks")


def upper_edge_us(value_us: float) -> float:
    """The reported value of a sample: its bucket's upper edge, rounded up to 0.1 us."""
    hist = LatencyHistogram()
    edge = bucket_edges_us(1.0, 1.05, hist.buckets)[hist.bucket_of(int(value_us * 1000))]
    return math.ceil(edge * 10) / 10


class FakeRunner:
    """Writes the status the way the runner does, every `interval_s` of fake time: per interval
    50 ticks at 100 Hz, 49 inferences of 180 us and one of 400 us that missed its deadline.

    `events` maps a write's index to a change made before it: "restart" (new pid, counters from
    zero), "stop" (no more writes), "skip" (an overrun skipping 2 periods), "stale" (ticks without
    inference: no fresh observation)."""

    def __init__(
        self, path: Path, start_ticks: int = 1000, pid: int = 4242, events: Optional[Dict[int, str]] = None
    ) -> None:
        self.path = path
        self.writer = StatusWriter(path)
        self.pid = pid
        self.events = dict(events or {})
        self.interval_s = 0.5
        self.writes = 0
        self.stopped = False
        self.hist = LatencyHistogram()
        self.counters = dict.fromkeys(COUNTERS, 0)
        # Start-up before the window: slow first inferences (cold caches) the window must not see.
        for _ in range(start_ticks):
            self.hist.add(5_000_000)
        self.counters["ticks"] = start_ticks
        self.next_write = NOW
        self.write(NOW)

    def run_interval(self, stale: bool = False) -> None:
        self.counters["ticks"] += 50
        if stale:
            self.counters["stale_ticks"] += 50
            return
        for _ in range(49):
            self.hist.add(180_000)
        self.hist.add(400_000)
        self.counters["deadline_misses"] += 1

    def write(self, at: float) -> None:
        event = self.events.get(self.writes)
        if event == "stop":
            self.stopped = True
        if self.stopped:
            return
        if event == "restart":
            self.pid += 1
            self.hist = LatencyHistogram()
            self.counters = dict.fromkeys(self.counters, 0)
        if self.writes > 0:
            self.run_interval(stale=event == "stale")
        if event == "skip":
            self.counters["skipped_periods"] += 2
            self.counters["overruns"] += 1
        status: Dict[str, Any] = {
            **loop_metrics(None),
            "schema_version": 1, "state": "running", "pid": self.pid, "rate_hz": 100.0,
            "release": f"/opt/jetpolicy/releases/{RELEASE}", "backend": "onnxruntime",
            "backend_reason": "requested", "started_at": NOW - 60, "updated_at": round(at, 3),
            "loaded": {"release": RELEASE, "runtime": RUNTIME, "config": "c0ffee.json"},
            "inference_histogram": self.hist.to_status(), **self.counters,
        }  # fmt: skip
        status["missed_deadlines"] = status["deadline_misses"] + status["skipped_periods"]
        assert self.writer.write(status)
        self.writes += 1

    def catch_up(self, now: float) -> None:
        while self.next_write + self.interval_s <= now + 1e-9:
            self.next_write += self.interval_s
            self.write(self.next_write)


class FakeTime:
    """Wall and monotonic clocks that move only when the code under test sleeps; each sleep lets
    the fake runner write the statuses that fall due."""

    def __init__(self, runner: Optional[FakeRunner], wall: float = NOW) -> None:
        self.runner = runner
        self.wall_s = wall
        self.sleeps: List[float] = []

    def wall(self) -> float:
        return self.wall_s

    def monotonic(self) -> float:
        return self.wall_s - NOW

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.wall_s += seconds
        if self.runner is not None:
            self.runner.catch_up(self.wall_s)


def fake_tree(tmp_path: Path, pid: int = 4242) -> ConditionSampler:
    """A sampler over a fake /proc without meminfo and two thermal zones, one unreadable."""
    proc, thermal = fake_proc_tree(tmp_path, pid, meminfo=False)
    return ConditionSampler(pid, proc=proc, thermal=thermal)


def window(tmp_path: Path, runner: Optional[FakeRunner], **kwargs: Any) -> Dict[str, Any]:
    clock = FakeTime(runner, kwargs.pop("wall", NOW))
    kwargs.setdefault("sampler", ConditionSampler(4242, proc=tmp_path / "none", thermal=tmp_path / "none"))
    return measure_window(tmp_path / "status.json", kwargs.pop("duration_s", 5.0), wall=clock.wall,
                          monotonic=clock.monotonic, sleep=clock.sleep, **kwargs)  # fmt: skip


def test_a_normal_window_measures_exactly_its_ticks(tmp_path: Path) -> None:
    """Two statuses 5 s apart: 500 ticks, the start-up's 5 ms inferences left out; percentiles are
    bucket upper edges; the miss rate is bench's (missed deadlines per release)."""
    runner = FakeRunner(tmp_path / "status.json", events={4: "skip"})
    result = window(tmp_path, runner, expected_pid=4242, expected_release=RELEASE)
    assert result["source"] == "live runner" and result["pid"] == 4242 and result["release"] == RELEASE
    assert (result["runtime"], result["config"]) == (RUNTIME, "c0ffee.json")
    assert result["updated_at"] == {"start": NOW, "end": NOW + 5.0} and result["window_s"] == 5.0
    assert (result["ticks"], result["inferences"], result["ticks_per_s"]) == (500, 500, 100.0)
    # 490 inferences of 180 us, 10 of 400 us: the 495th (p99) is a 400 us one.
    p180, p400 = upper_edge_us(180.0), upper_edge_us(400.0)
    assert result["inference_us"] == {"p50": p180, "p90": p180, "p99": p400, "max": p400}
    assert 180.0 <= p180 <= 189.1 and 400.0 <= p400 <= 420.1
    # 10 late ticks + 2 skipped periods over 500 ticks + 2 skipped periods.
    assert (result["deadline_misses"], result["skipped_periods"], result["missed_deadlines"]) == (10, 2, 12)
    assert result["deadline_miss_rate"] == round(12 / 502, 6) and result["overruns"] == 1
    assert result["backend"] == "onnxruntime" and result["rate_hz"] == 100.0
    assert result["inference_overflow"] == 0
    assert result["histogram"]["first_edge_us"] == 1.0 and result["histogram"]["ratio"] == 1.05
    assert result["conditions"]["cpu_percent"] is None and result["conditions"]["thermal_c"] is None
    json.dumps(result, allow_nan=False)  # plain JSON, as the module parses it


def test_a_restart_within_the_window_is_refused(tmp_path: Path) -> None:
    """A new pid mid-window: the window would measure two processes."""
    runner = FakeRunner(tmp_path / "status.json", events={4: "restart"})
    with pytest.raises(WindowError, match=r"restarted within the window \(pid 4242 -> 4243\)"):
        window(tmp_path, runner)


def test_a_status_from_another_pid_than_the_service_is_refused(tmp_path: Path) -> None:
    """--pid is the service's MainPID: a status written by another process is not its loop."""
    runner = FakeRunner(tmp_path / "status.json")
    with pytest.raises(WindowError, match="written by pid 4242, the service's main pid is 999") as info:
        window(tmp_path, runner, expected_pid=999)
    assert info.value.fix


def test_a_runner_on_another_release_is_refused(tmp_path: Path) -> None:
    runner = FakeRunner(tmp_path / "status.json")
    with pytest.raises(WindowError, match=f"loaded release {RELEASE}, not 0123456789abcdef"):
        window(tmp_path, runner, expected_release="0123456789abcdef")


@pytest.mark.parametrize("wall", [NOW + 30, NOW - 30], ids=["old", "from-before-a-clock-step"])
def test_a_stale_status_is_refused(tmp_path: Path, wall: float) -> None:
    """A status nobody rewrites (the runner is gone) is not a live loop."""
    FakeRunner(tmp_path / "status.json")
    with pytest.raises(WindowError, match=r"stale after 10 s\): no runner rewrites it"):
        window(tmp_path, None, wall=wall)


def test_a_missing_status_and_one_that_stops_being_written_are_refused(tmp_path: Path) -> None:
    with pytest.raises(WindowError, match=r"no runner status at .*: the runner is not running"):
        window(tmp_path, None)
    runner = FakeRunner(tmp_path / "status.json", events={3: "stop"})
    with pytest.raises(WindowError, match="was not rewritten for 10 s within the window"):
        window(tmp_path, runner)


def test_too_few_ticks_or_inferences_are_refused(tmp_path: Path) -> None:
    """500 ticks do not make the p99 of 1000; ticks without fresh observations run no inference."""
    with pytest.raises(WindowError, match=r"only 500 ticks fell in the 5.00 s window \(at least 1000"):
        window(tmp_path, FakeRunner(tmp_path / "status.json"), min_ticks=1000)
    stale = {i: "stale" for i in range(2, 11)}
    with pytest.raises(NoLiveInputError, match="only 50 of the window's 500 ticks ran the policy") as info:
        window(tmp_path, FakeRunner(tmp_path / "status.json", events=stale))
    assert "policy_gate_timing_source: bench" in info.value.fix
    assert NO_LIVE_INPUT_EXIT == 4  # policy_bench source=auto benches on exactly this exit code


def test_a_runtime_without_the_histogram_is_refused_before_the_wait(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    FakeRunner(status)
    data = json.loads(status.read_text())
    del data["inference_histogram"]
    status.write_text(json.dumps(data))
    clock = FakeTime(None)
    with pytest.raises(WindowError, match="no inference_histogram: the runner is a runtime older"):
        measure_window(status, 5.0, wall=clock.wall, monotonic=clock.monotonic, sleep=clock.sleep)
    assert clock.sleeps == []


def test_a_just_started_runner_gets_its_warmup_ticks_first(tmp_path: Path) -> None:
    """Ticks 0 at the first read: the window opens once the runner has run 100 ticks (two writes
    later), so its start-up is not in it."""
    runner = FakeRunner(tmp_path / "status.json", start_ticks=0)
    result = window(tmp_path, runner, warmup_ticks=100)
    assert result["updated_at"] == {"start": NOW + 1.0, "end": NOW + 6.0}
    assert result["ticks"] == 500


def test_the_window_in_the_result_carries_the_conditions(tmp_path: Path) -> None:
    runner = FakeRunner(tmp_path / "status.json")
    result = window(tmp_path, runner, sampler=fake_tree(tmp_path))
    conditions = result["conditions"]
    assert conditions["samples"] == 21  # one before the wait, one after each 0.25 s poll
    assert conditions["runner_rss_mb"] == {"min": 200.0, "max": 200.0}
    assert conditions["thermal_c"]["thermal_zone0"]["max"] == 41.5
    assert conditions["source"] == "proc" and len(conditions["series"]) == 21


class RecordingSampler(ConditionSampler):
    """A /proc sampler that records when it is entered and left."""

    def __init__(self, pid: Optional[int], tmp_path: Path) -> None:
        super().__init__(pid, proc=tmp_path / "none", thermal=tmp_path / "none")
        self.events: List[str] = []

    def __enter__(self) -> RecordingSampler:
        self.events.append("enter")
        return self

    def __exit__(self, *exc: object) -> None:
        self.events.append("exit")


def test_the_sampler_is_made_for_the_runner_pid_and_left_when_the_window_is_refused(tmp_path: Path) -> None:
    """make_sampler gets the pid of the status (the service's runner), and the sampler (a
    tegrastats process on L4T) is left even when the window is refused mid-way."""
    made: List[RecordingSampler] = []

    def make(pid: Optional[int]) -> RecordingSampler:
        made.append(RecordingSampler(pid, tmp_path))
        return made[-1]

    clock = FakeTime(FakeRunner(tmp_path / "status.json", events={4: "restart"}))
    with pytest.raises(WindowError, match="restarted within the window"):
        measure_window(tmp_path / "status.json", 5.0, make_sampler=make, wall=clock.wall,
                       monotonic=clock.monotonic, sleep=clock.sleep)  # fmt: skip
    assert [(s.pid, s.events) for s in made] == [(4242, ["enter", "exit"])]
    assert made[0].samples > 0


def test_the_cli_refuses_with_exit_2_and_a_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`jetpolicy window` exits 2 with the cause and the fix on stderr, and prints nothing on stdout."""
    code = main(["window", "--status", str(tmp_path / "status.json"), "--duration", "5"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("jetpolicy window: no runner status at ") and "fix: start the service" in err
