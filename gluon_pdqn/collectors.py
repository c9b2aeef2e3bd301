"""Collectors: who acts. Each gathers experience for the learner and reports what it added.

The training loop (``loops.Training``) is the same whoever acts: it asks its collector for experience, lets
the learner learn from it, and evaluates, logs and checkpoints by env steps. Two collectors feed a replay,
one hands rollouts straight to the learner:

- :class:`VectorCollector` steps an in-process vector env with the learner's own policy (modes single, data,
  model, ensemble, and each worker of mode dist).
- :class:`apex.ApexCollector` receives the experience of actor processes that act with copies of the
  learner's parameters (mode apex, Horgan et al. 2018).
- :class:`actors.ActorPoolCollector` serves actor threads or processes that ask the learner for every action
  and hand in rollouts for a rollout learner (mode async, Mnih et al. 2016, served as GA3C does).

A collector implements ``start`` (a fresh run), ``open_session`` (the loop starts), ``collect``,
``after_updates``, ``epsilon``, ``window_figures``, ``checkpoint_state``/``restore`` and ``close``, and names
its ``checkpoint_arrays``; a new one plugs into ``Training._make_collector``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import envs
from .config import Config
from .envs import EnvSpec, snapshot
from .errors import EnvironmentFault
from .exploration import EpsilonSchedule, epsilon_greedy
from .replay import ReplayBuffer


class ActorLost(Exception):
    """An actor died or failed outside its environment: the learner is sound, the run checkpoints and stops."""


@dataclass
class Episode:
    """An episode that ended: its stream (the replay's env index), return and length."""

    stream: int
    episode_return: float
    length: int
    steps_before: int  # transitions of this collection that came before the episode's end (for its env step)


@dataclass
class Collected:
    """What one ``collect`` call added to the replay."""

    env_steps: int = 0  # transitions added
    episodes: list[Episode] = field(default_factory=list)
    rollouts: list = field(default_factory=list)  # actors.Rollout: experience for a rollout learner (mode async)


def environment_call(env_id: str, phase: str, function, *args, **kwargs):
    """``function(*args, **kwargs)`` on an environment; whatever it raises becomes an EnvironmentFault.

    The environment may be the user's own code: its exception, whatever its type, is its fault, not ours.
    """
    try:
        return function(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 (any exception of the user's code)
        raise EnvironmentFault(f"environment {env_id} raised {type(error).__name__}: {error} during "
                               f"{phase}") from error


def check_step(env_id: str, rewards: np.ndarray, observations: np.ndarray) -> None:
    """Refuse what no agent can learn from: a non-finite reward, or a non-finite float observation."""
    if not np.all(np.isfinite(rewards)):
        bad = rewards[~np.isfinite(rewards)][0]
        raise EnvironmentFault(f"environment {env_id} returned a non-finite reward ({bad})")
    if observations.dtype.kind == "f" and not np.all(np.isfinite(observations)):
        raise EnvironmentFault(f"environment {env_id} returned an observation with NaN or infinite values")


class VectorCollector:
    """One vector env stepped in the learner's process, acting epsilon-greedily with the learner's policy.

    Each ``collect`` is one step of every env. Its state (observations, episodes in progress, the envs'
    emulator state where it can be captured) is part of a checkpoint, so a resumed run continues exactly.

    Args:
        cfg: the run's configuration.
        spec: the environment's spaces.
        replay: where transitions go (one stream per env).
        learner: whose ``greedy_values`` choose the greedy actions (an ensemble is told of new episodes).
        rng: the loop's action Generator (checkpointed by the loop).
        epsilon: the exploration schedule, by the run's env steps.
    """

    checkpoint_arrays = ("obs", "resetting", "episode_returns", "episode_lengths")  # loop.npz

    def __init__(self, cfg: Config, spec: EnvSpec, replay: ReplayBuffer, learner, rng: np.random.Generator,
                 epsilon: EpsilonSchedule):
        self.cfg, self.spec, self.replay, self.learner, self.rng = cfg, spec, replay, learner, rng
        self.epsilon = epsilon
        self.num_envs = cfg.env.num_envs
        self.vector_env = envs.make_vector_env(cfg.env, self.num_envs)
        self.episode_returns = np.zeros(self.num_envs)
        self.episode_lengths = np.zeros(self.num_envs, dtype=np.int64)
        self.obs = None
        self.resetting = np.zeros(self.num_envs, dtype=bool)
        self.broken = False  # the environment faulted: its state is not saved

    def start(self, seed: int) -> None:
        """First reset of a fresh run: every env begins an episode."""
        self.obs, _ = environment_call(self.cfg.env.id, "the first reset", self.vector_env.reset, seed=seed)
        self.resetting = np.zeros(self.num_envs, dtype=bool)
        for i in range(self.num_envs):
            self._begin_episode(i, self.obs[i])

    def _begin_episode(self, env: int, first_obs: np.ndarray) -> None:
        self.replay.begin_episode(env, first_obs)
        if self.learner.ensemble is not None:  # one acting member per episode (run.ensemble_acting=member)
            self.learner.ensemble.episode_started(env)

    def open_session(self) -> None:
        """The loop starts (or resumes): the envs are already open."""

    def after_updates(self, env_steps: int) -> None:
        """The learner acts with its latest parameters itself: nothing to publish."""

    def window_figures(self) -> tuple[dict, list[dict]]:
        """No figures beyond the loop's own."""
        return {}, []

    def collect(self, env_steps: int, learning: bool, phase_seconds: dict) -> Collected:
        """Step every env once: random actions before ``learning``, epsilon-greedy after.

        Adds the time spent acting, stepping and storing to ``phase_seconds``.
        """
        cfg = self.cfg
        started = time.perf_counter()
        greedy_q = (lambda: self.learner.greedy_values(self.obs)) if learning else None
        actions = epsilon_greedy(greedy_q, self.epsilon(env_steps), self.spec.n_actions, self.rng, self.num_envs)
        acted = time.perf_counter()
        try:
            next_obs, rewards, terminated, truncated, _ = environment_call(
                cfg.env.id, "a training step", self.vector_env.step, actions)
            check_step(cfg.env.id, rewards, next_obs)
        except EnvironmentFault:
            self.broken = True
            raise
        stepped = time.perf_counter()
        collected = self._store(actions, rewards, next_obs, terminated, truncated)
        self.obs = next_obs
        phase_seconds["act"] += acted - started
        phase_seconds["env"] += stepped - acted
        phase_seconds["store"] += time.perf_counter() - stepped
        return collected

    def _store(self, actions, rewards, next_obs, terminated, truncated) -> Collected:
        """Store the step's transitions; a step that only reset an env (next-step autoreset) is not one."""
        collected = Collected()
        for i in range(self.num_envs):
            if self.resetting[i]:
                self._begin_episode(i, next_obs[i])
                continue
            self.replay.add(i, int(actions[i]), float(rewards[i]), next_obs[i], bool(terminated[i]),
                            bool(truncated[i]))
            collected.env_steps += 1
            self.episode_returns[i] += rewards[i]
            self.episode_lengths[i] += 1
            if terminated[i] or truncated[i]:
                collected.episodes.append(Episode(i, float(self.episode_returns[i]), int(self.episode_lengths[i]),
                                                  collected.env_steps))
                self.episode_returns[i], self.episode_lengths[i] = 0.0, 0
        self.resetting = terminated | truncated
        return collected

    # --- checkpoints ------------------------------------------------------------------------------

    def checkpoint_state(self, with_envs: bool) -> tuple[dict, object]:
        """(arrays for loop.npz, the envs' snapshot or None). ``with_envs``: try to capture the emulators."""
        arrays = {"obs": self.obs, "resetting": self.resetting, "episode_returns": self.episode_returns,
                  "episode_lengths": self.episode_lengths}
        env_state = snapshot.capture(self.vector_env) if with_envs and not self.broken else None
        return arrays, env_state

    def restore(self, arrays: dict | None, env_state, env_steps: int, notes: list[str]) -> None:
        """Continue from a checkpoint at ``env_steps``: the envs' saved state if there is one, else new episodes."""
        seed = self.cfg.run.seed + env_steps
        self.vector_env.reset(seed=seed)
        if env_state is not None and arrays is not None:
            snapshot.restore(self.vector_env, env_state)
            self.obs, self.resetting = arrays["obs"], arrays["resetting"]
            self.episode_returns, self.episode_lengths = arrays["episode_returns"], arrays["episode_lengths"]
            return
        # The environment's state could not be saved: episodes in progress end here as truncated.
        notes.append(f"{self.spec.id}: environment state is not restorable; episodes restart")
        self.obs, _ = self.vector_env.reset(seed=seed)
        self.resetting = np.zeros(self.num_envs, dtype=bool)
        self.replay.truncate_open_episodes()
        for i in range(self.num_envs):
            self._begin_episode(i, self.obs[i])

    def close(self) -> None:
        try:
            self.vector_env.close()
        except Exception:  # noqa: BLE001 (a broken environment may fail to close too; the run is saved)
            pass
