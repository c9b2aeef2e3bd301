"""Epsilon schedules and per-actor epsilons (numpy only)."""
from __future__ import annotations

import math

import numpy as np

from .config import ExplorationConfig


def action_rng(seed: int) -> np.random.Generator:
    """The Generator of exploration's draws (random actions, epsilon tests) for a run or actor of ``seed``.

    Why not ``np.random.default_rng(seed)``: gymnasium seeds an environment's ``np_random`` with
    ``SeedSequence(seed)`` too, so with the seed the environment is reset with, random actions would be the
    environment's own random draws. A toy environment that rewards guessing a colour it draws scored 10 of 20
    under "random" play that way, where 0 is expected. A spawn key gives exploration a stream of its own.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))


class EpsilonSchedule:
    """Epsilon as a function of env steps: ``start`` until ``offset``, then down to ``final`` over ``decay_steps``.

    ``linear`` interpolates; ``exponential`` multiplies by a constant factor per step so that epsilon reaches
    ``final`` after ``decay_steps`` and stays there.
    """

    def __init__(self, kind: str, start: float, final: float, decay_steps: int, offset: int = 0):
        if kind not in ("linear", "exponential"):
            raise ValueError(f"unknown epsilon schedule {kind!r}")
        self.kind, self.start, self.final = kind, float(start), float(final)
        self.decay_steps, self.offset = int(decay_steps), int(offset)

    @classmethod
    def from_config(cls, cfg: ExplorationConfig, offset: int = 0) -> "EpsilonSchedule":
        return cls(cfg.schedule, cfg.epsilon_start, cfg.epsilon_final, cfg.decay_steps, offset)

    @classmethod
    def noisy_nets(cls, offset: int) -> "EpsilonSchedule":
        """For a noisy network, which explores by itself: random actions until ``offset``, none after."""
        return cls("linear", 1.0, 0.0, 1, offset)

    def __call__(self, env_steps: int) -> float:
        progress = min(max(env_steps - self.offset, 0) / self.decay_steps, 1.0)
        if self.kind == "linear":
            return self.start + progress * (self.final - self.start)
        if self.start <= 0 or self.final <= 0:
            return self.final if progress >= 1.0 else self.start
        return self.start * math.exp(progress * math.log(self.final / self.start))


def epsilon_greedy(greedy_q, epsilon: float, n_actions: int, rng: np.random.Generator, batch: int) -> np.ndarray:
    """Actions for ``batch`` environments: greedy in the Q-values, random with probability epsilon.

    ``greedy_q`` is a function returning the Q-values (batch, n_actions), called only when at least one
    environment acts greedily: a step that explores everywhere costs no forward pass (as SB3's DQN does; with
    one environment at epsilon 0.8, four steps in five). None: every action is random (warm-up). The
    Generator draws the same numbers in the same order either way, so a run's randomness does not depend on
    whether Q-values were computed.
    """
    explore = rng.random(batch) < epsilon
    random_actions = rng.integers(0, n_actions, size=batch)
    if greedy_q is None or explore.all():
        return random_actions
    return np.where(explore, random_actions, greedy_q().argmax(axis=1))


def epsilon_greedy_one(greedy_q, epsilon: float, n_actions: int, rng: np.random.Generator) -> int:
    """``epsilon_greedy`` for one environment (an async actor's step), without its arrays.

    The same draws in the same order as ``epsilon_greedy`` with ``batch=1``, so the same action; about 2.5 us
    against 16 here, at every step of every async actor.
    """
    explore = rng.random() < epsilon
    random_action = int(rng.integers(n_actions))
    return random_action if explore else int(greedy_q().argmax())


def apex_epsilons(num_actors: int, base: float = 0.4, alpha: float = 7.0) -> np.ndarray:
    """The Ape-X ladder (Horgan et al. 2018): epsilon_i = base ** (1 + alpha * i / (N - 1))."""
    if num_actors == 1:
        return np.array([base])
    return base ** (1.0 + alpha * np.arange(num_actors) / (num_actors - 1))


def actor_schedules(exploration: ExplorationConfig, actors, total: int, ladder: str = "apex", *, offset: int = 0,
                    noisy: bool = False, seed: int = 0) -> list[EpsilonSchedule]:
    """The exploration schedule of each actor in ``actors`` (indices among the ``total`` actors of a run or job).

    Every actor starts at ``epsilon_start`` (random until ``offset`` env steps, when learning starts) and
    ends at its own final epsilon: the Ape-X ladder (``apex_epsilons`` over all ``total`` actors: a job's
    actor rank x N + i has its own rung, Horgan et al. 2018; a lone actor ends at ``epsilon_final``, so it
    explores as mode single does), or finals ``sampled`` from {0.1, 0.01, 0.5} as in Mnih et al. 2016 (drawn
    from ``seed`` alone, so a resumed run keeps them). A ``noisy`` network explores by itself: no epsilon once
    learning starts.
    """
    if noisy:
        return [EpsilonSchedule.noisy_nets(offset) for _ in actors]
    ladders = {"sampled": lambda: sampled_final_epsilons(total, np.random.default_rng(seed)),
               "apex": lambda: [exploration.epsilon_final] if total == 1 else apex_epsilons(total)}
    if ladder not in ladders:
        raise ValueError(f"unknown epsilon ladder {ladder!r}")
    finals = ladders[ladder]()
    e = exploration
    return [EpsilonSchedule(e.schedule, e.epsilon_start, float(finals[i]), e.decay_steps, offset) for i in actors]


def sampled_final_epsilons(num_actors: int, rng: np.random.Generator, values=(0.1, 0.01, 0.5),
                           probabilities=(0.4, 0.3, 0.3)) -> np.ndarray:
    """Final epsilon per actor drawn as in asynchronous one-step Q-learning (Mnih et al. 2016)."""
    return rng.choice(np.asarray(values), size=num_actors, p=np.asarray(probabilities))
