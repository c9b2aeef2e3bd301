"""What a collector hands the training loop, and the interface every collector implements."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..errors import PartLost


class ActorLost(PartLost):
    """An actor died or failed outside its environment: the learner is sound, the run checkpoints and stops."""


@dataclass
class Episode:
    """An episode that ended: its stream (the replay's env index, or the actor), return and length."""

    stream: int
    episode_return: float
    length: int
    steps_before: int  # transitions of this collection that came before the episode's end (for its env step)


@dataclass
class Rollout:
    """Consecutive steps of one actor's episode: s_0..s_{T-1}, a, r, and where it ended (mode async)."""

    actor: int
    obs: np.ndarray  # (T, *obs_shape)
    actions: np.ndarray  # (T,) int64
    rewards: np.ndarray  # (T,) float32
    versions: np.ndarray  # (T,) parameter version that chose each action
    bootstrap_obs: np.ndarray  # s_T: the state after the last step
    terminated: bool  # s_T is terminal (no bootstrap); a truncated episode bootstraps from s_T
    episodes: list = field(default_factory=list)  # (return, length) of episodes that ended in this rollout


@dataclass
class Collected:
    """What one ``collect`` call gathered: transitions stored in the replay, or rollouts for a rollout learner."""

    env_steps: int = 0  # env steps taken (transitions added, or steps of the rollouts)
    episodes: list[Episode] = field(default_factory=list)
    rollouts: list[Rollout] = field(default_factory=list)


class Collector(Protocol):
    """Who acts. The training loop uses one like this::

        collector.start(seed)             # a fresh run (or collector.restore(...) for a resumed one)
        collector.open_session()          # actors start
        while training:
            collected = collector.collect(env_steps, learning, phase_seconds)
            ...                           # the learner learns from the replay or from collected.rollouts
            collector.after_updates(env_steps)
            figures, actor_rows = collector.window_figures()   # when a metrics row is due
        arrays, env_state = collector.checkpoint_state(with_envs=True)
        collector.close()

    ``collect`` raises ``EnvironmentFault`` for a fault of the environment (``broken`` is then true: its
    state is not saved) and ``ActorLost`` when an actor died. ``checkpoint_arrays`` names the arrays of
    ``loop.npz`` it restores from.
    """

    checkpoint_arrays: tuple[str, ...]
    broken: bool

    def start(self, seed: int) -> None: ...

    def open_session(self) -> None: ...

    def collect(self, env_steps: int, learning: bool, phase_seconds: dict) -> Collected: ...

    def after_updates(self, env_steps: int) -> None: ...

    def epsilon(self, env_steps: int) -> float: ...

    def window_figures(self) -> tuple[dict, list[dict]]: ...

    def checkpoint_state(self, with_envs: bool) -> tuple[dict, object]: ...

    def restore(self, arrays: dict | None, env_state, env_steps: int, notes: list[str]) -> None: ...

    def close(self) -> None: ...
