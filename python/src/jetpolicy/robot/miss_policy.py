"""What the control loop publishes when deadlines are missed (docs/miss-policy.md).

A missed deadline is a control period whose action was not out in time: a tick whose action was
ready only after its deadline, or a period the scheduler skipped. Counting consecutive missed
periods (`c`):

- normal (c < hold_after): a late action is dropped and nothing is published, exactly what a
  skipped period looks like to the receiver, which keeps its last command;
- hold (hold_after <= c < decay_after): the last action published is sent again every late tick;
- decay (decay_after <= c < safe_after): a linear blend from that action to the safe action,
  reaching it at c = safe_after;
- degraded (c >= safe_after): the safe action, and the service reports itself degraded. It
  stays there, whatever the policy computes, until `recover_after` consecutive ticks are on time.

Any on-time tick outside the degraded state ends the episode: c goes back to 0 and the fresh action is
published. The class is pure (no clock, no I/O) so each transition is tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

from jetpolicy.common.errors import ConfigError

__all__ = [
    "DECAY",
    "FRESH",
    "HOLD",
    "MISS_STATES",
    "NOTHING",
    "SAFE",
    "MissPolicy",
    "MissPolicyConfig",
]

MISS_STATES = ("normal", "hold", "decay", "degraded")
# What a tick publishes (MissPolicy.update's answer).
FRESH = "fresh"  # the action computed this tick
NOTHING = "nothing"  # nothing: the late action is dropped
HOLD = "hold"  # the last action published, again
DECAY = "decay"  # last action + blend * (safe - last action)
SAFE = "safe"  # the safe action


@dataclass(frozen=True)
class MissPolicyConfig:
    """Thresholds in control periods. Defaults and their reasons: docs/miss-policy.md."""

    hold_after: int = 2  # K
    decay_after: int = 5  # M
    safe_after: int = 20  # N
    recover_after: int = 50  # R: on-time ticks in a row that end the degraded state

    def __post_init__(self) -> None:
        for name in ("hold_after", "decay_after", "safe_after", "recover_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"miss_policy: '{name}' must be an integer >= 1, got {value!r}", "fix it")
        if not self.hold_after < self.decay_after < self.safe_after:
            raise ConfigError(
                f"miss_policy: needs hold_after < decay_after < safe_after, got "
                f"{self.hold_after}, {self.decay_after}, {self.safe_after}",
                "order the thresholds: hold first, then decay, then the safe action",
            )

    @property
    def decay_ticks(self) -> int:
        """Missed periods the blend takes: it moves 1/decay_ticks of the way per period."""
        return self.safe_after - self.decay_after + 1


class MissPolicy:
    """The state machine; `update` once per tick, then publish what it answers."""

    def __init__(self, config: MissPolicyConfig) -> None:
        self.config = config
        self.state = "normal"
        self.consecutive_misses = 0  # missed periods in a row, skipped ones included
        self.on_time_streak = 0  # on-time ticks in a row while degraded
        self.blend = 0.0  # DECAY only: 0 is the held action, 1 the safe action
        self.entered: Dict[str, int] = {state: 0 for state in MISS_STATES[1:]}

    @property
    def degraded(self) -> bool:
        return self.state == "degraded"

    def update(self, skipped: int, late: bool) -> str:
        """Account for the `skipped` periods before this tick and this tick's own outcome; returns
        FRESH, NOTHING, HOLD, DECAY or SAFE."""
        if skipped > 0:
            self._missed(skipped)
        if late:
            self._missed(1)
        else:
            self._on_time()
        if self.state == "degraded":
            return SAFE
        if not late:
            return FRESH
        if self.state == "hold":
            return HOLD
        if self.state == "decay":
            cfg = self.config
            self.blend = min(1.0, (self.consecutive_misses - cfg.decay_after + 1) / cfg.decay_ticks)
            return DECAY
        return NOTHING

    def _missed(self, periods: int) -> None:
        self.consecutive_misses += periods
        self.on_time_streak = 0
        if self.state != "degraded":
            self._enter(self._state_for(self.consecutive_misses))

    def _on_time(self) -> None:
        self.consecutive_misses = 0
        if self.state == "degraded":
            self.on_time_streak += 1
            if self.on_time_streak < self.config.recover_after:
                return
            self.on_time_streak = 0
        self.state = "normal"

    def _state_for(self, misses: int) -> str:
        cfg = self.config
        if misses >= cfg.safe_after:
            return "degraded"
        if misses >= cfg.decay_after:
            return "decay"
        if misses >= cfg.hold_after:
            return "hold"
        return "normal"

    def _enter(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if state != "normal":
                self.entered[state] += 1

    def to_dict(self) -> Dict[str, object]:
        cfg = self.config
        return {
            "state": self.state,
            "consecutive_misses": self.consecutive_misses,
            "on_time_streak": self.on_time_streak,
            "entered": dict(self.entered),
            "hold_after": cfg.hold_after,
            "decay_after": cfg.decay_after,
            "safe_after": cfg.safe_after,
            "recover_after": cfg.recover_after,
        }
