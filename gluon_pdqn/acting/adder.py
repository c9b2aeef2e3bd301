"""The one writer of experience into the replay: episode starts, steps, and priorities (numpy only).

The vector env and the apex collector store through it, and the loop hands it the priorities of what the
learner sampled, so prioritized replay's write path is in one place (Acme calls this an adder).
"""
from __future__ import annotations

import numpy as np

from ..replay import ReplayBuffer


class ReplayAdder:
    """Writes into ``replay`` by stream (one per environment that acts).

    Args:
        replay: the run's replay.
        frame_stack: frames per observation; the replay stores each observation's newest frame only.
        actor_priorities: whether a step's initial priority computed by its actor is used (apex under DQN);
            otherwise new transitions enter at the replay's largest priority, as in PER. Under a
            distributional algorithm the learner ranks by its loss, on another scale than an actor's |TD|.
    """

    def __init__(self, replay: ReplayBuffer, frame_stack: int = 1, actor_priorities: bool = False):
        self.replay = replay
        self.frame_of = (lambda obs: obs[-1]) if frame_stack > 1 else (lambda obs: obs)
        self.actor_priorities = actor_priorities and replay.prioritized

    def begin(self, stream: int, frame: np.ndarray) -> None:
        """The first frame of a new episode in ``stream``."""
        self.replay.begin_episode_frame(stream, frame)

    def add(self, stream: int, action: int, reward: float, frame: np.ndarray, terminated: bool, truncated: bool,
            priority: float | None = None) -> None:
        """One step of ``stream``: ``action`` from its newest observation gave ``reward`` and the frame ``frame``.

        ``priority``: the initial |TD error| its actor computed for the transition that starts at this step.
        """
        self.replay.add_frame(stream, action, reward, frame, terminated, truncated,
                              priority=priority if self.actor_priorities else None)

    def learned(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """New priorities of transitions the learner sampled (the caller reads them only under ``prioritized``)."""
        self.replay.update_priorities(indices, td_errors)

    @property
    def prioritized(self) -> bool:
        return self.replay.prioritized

    def truncate_open_episodes(self) -> None:
        """A resumed run starts new episodes: the saved ones in progress end as truncated."""
        self.replay.truncate_open_episodes()
