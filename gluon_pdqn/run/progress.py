"""A run's progress: its counters, the window between two rows of metrics.csv, the row, and the status line."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import metrics


@dataclass
class Counters:
    """Progress of a run, by unit (see metrics.py for the names)."""

    env_steps: int = 0
    learner_steps: int = 0
    episodes: int = 0
    skipped_updates: int = 0
    evaluations: int = 0
    wall_seconds: float = 0.0  # training time so far, summed over resumed sessions

    def take(self, saved: dict) -> None:
        """Continue from a checkpoint's counters (in place: the loop's parts hold this object)."""
        for name, value in saved.items():
            setattr(self, name, value)


@dataclass
class LogWindow:
    """What the loop accumulates between two rows of metrics.csv."""

    start: float  # perf_counter() when the window opened
    env_steps: int  # counters when it opened
    learner_steps: int
    returns: list = field(default_factory=list)  # returns of the episodes that ended in it
    phase_seconds: dict = field(default_factory=lambda: dict.fromkeys(metrics.LOOP_PHASES, 0.0))  # see LOOP_PHASES

    def restart(self, now: float, env_steps: int, learner_steps: int) -> None:
        self.start, self.env_steps, self.learner_steps = now, env_steps, learner_steps
        self.returns = []
        self.phase_seconds = dict.fromkeys(metrics.LOOP_PHASES, 0.0)


def metrics_row(counters: Counters, window: LogWindow, result, epsilon: float, frame_skip: int, now: float,
                extra: dict) -> dict:
    """One row of metrics.csv for the window ending ``now``: ``result`` is the last update's StepResult (or None),
    ``extra`` the figures of the collector, the updates and the job."""
    c = counters
    elapsed = max(now - window.start, 1e-9)
    steps = max(c.env_steps - window.env_steps, 1)
    return {
        metrics.ENV_STEPS: c.env_steps, metrics.FRAMES: c.env_steps * frame_skip,
        metrics.LEARNER_STEPS: c.learner_steps, metrics.EPISODES: c.episodes,
        metrics.WALL_SECONDS: round(c.wall_seconds, 3),
        metrics.EPISODIC_RETURN: float(np.mean(window.returns)) if window.returns else float("nan"),
        metrics.EPSILON: epsilon,
        metrics.ENV_STEPS_PER_S: (c.env_steps - window.env_steps) / elapsed,
        metrics.UPDATES_PER_S: (c.learner_steps - window.learner_steps) / elapsed,
        metrics.TD_LOSS: result.loss() if result else float("nan"),
        metrics.MEAN_Q: result.mean_q() if result else float("nan"),
        metrics.GRAD_NORM: result.grad_norm if result else float("nan"),
        metrics.SKIPPED_UPDATES: c.skipped_updates,
        metrics.RSS_MIB: metrics.resident_mib(),
        **{metrics.LOOP_PHASES[phase]: 1e3 * seconds / steps for phase, seconds in window.phase_seconds.items()},
        **extra,
    }


def status_line(counters: Counters, budget: int, epsilon: float, recent_returns: list, loss: float,
                last_eval: float | None) -> str:
    """The progress display's line."""
    c = counters
    rate = c.env_steps / c.wall_seconds if c.wall_seconds > 0 else 0.0
    recent = f"{np.mean(recent_returns[-20:]):.1f}" if recent_returns else "-"
    evaluation = f"{last_eval:.1f}" if last_eval is not None else "-"
    return (f"env steps {c.env_steps:,}/{budget:,}  {rate:,.0f} steps/s  updates {c.learner_steps:,}  "
            f"eps {epsilon:.3f}  return {recent}  loss {'-' if loss != loss else f'{loss:.3g}'}  eval {evaluation}")


def crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in (before, after]."""
    return after // every > before // every
