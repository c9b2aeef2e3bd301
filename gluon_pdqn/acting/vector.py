"""The in-process vector env: one gymnasium vector env stepped in the learner's process (numpy only).

The collector of modes single, data, model and ensemble, and of each worker of a parameter-server job.
"""
from __future__ import annotations

import time

import numpy as np

from .. import envs
from ..config import EnvConfig
from ..envs import EnvSpec, snapshot
from ..errors import EnvironmentFault
from ..exploration import EpsilonSchedule, epsilon_greedy
from .adder import ReplayAdder
from .checks import check_step, environment_call
from .protocol import Collected, Episode


class VectorCollector:
    """One vector env, acting epsilon-greedily with the learner's policy.

    Each ``collect`` is one step of every env. Its state (observations, episodes in progress, the envs'
    emulator state where it can be captured) is part of a checkpoint, so a resumed run continues exactly.

    Args:
        env_cfg: the environments (``num_envs`` of them).
        spec: the environment's spaces.
        adder: where transitions go (one stream per env).
        greedy_values: ``obs -> values`` (batch, n_actions) whose argmax is the greedy action.
        rng: the loop's action Generator (checkpointed by the loop).
        epsilon: the exploration schedule, by the run's env steps.
        episode_started: told ``env`` whenever an episode starts in it (an ensemble picks its acting member).
        restore_seed: the run's seed: a resumed run resets its envs with ``restore_seed + env_steps``.
    """

    checkpoint_arrays = ("obs", "resetting", "episode_returns", "episode_lengths")  # loop.npz

    def __init__(self, env_cfg: EnvConfig, spec: EnvSpec, adder: ReplayAdder, greedy_values,
                 rng: np.random.Generator, epsilon: EpsilonSchedule, episode_started=None, restore_seed: int = 0):
        self.env_cfg, self.spec, self.adder, self.rng, self.epsilon = env_cfg, spec, adder, rng, epsilon
        self.greedy_values = greedy_values
        self.episode_started = episode_started
        self.restore_seed = restore_seed
        self.num_envs = env_cfg.num_envs
        self.vector_env = envs.make_vector_env(env_cfg, self.num_envs)
        self.episode_returns = np.zeros(self.num_envs)
        self.episode_lengths = np.zeros(self.num_envs, dtype=np.int64)
        self.obs = None
        self.resetting = np.zeros(self.num_envs, dtype=bool)
        self.broken = False  # the environment faulted: its state is not saved

    def start(self, seed: int) -> None:
        """First reset of a fresh run: every env begins an episode."""
        self.obs, _ = environment_call(self.env_cfg.id, "the first reset", self.vector_env.reset, seed=seed)
        self.resetting = np.zeros(self.num_envs, dtype=bool)
        for i in range(self.num_envs):
            self._begin_episode(i, self.obs[i])

    def _begin_episode(self, env: int, first_obs: np.ndarray) -> None:
        self.adder.begin(env, self.adder.frame_of(first_obs))
        if self.episode_started is not None:
            self.episode_started(env)

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
        started = time.perf_counter()
        greedy_q = (lambda: self.greedy_values(self.obs)) if learning else None
        actions = epsilon_greedy(greedy_q, self.epsilon(env_steps), self.spec.n_actions, self.rng, self.num_envs)
        acted = time.perf_counter()
        env_id = self.env_cfg.id
        try:
            next_obs, rewards, terminated, truncated, _ = environment_call(
                env_id, "a training step", self.vector_env.step, actions)
            check_step(env_id, rewards, next_obs, self.spec.obs_shape, self.spec.obs_dtype)
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
        frame_of = self.adder.frame_of
        for i in range(self.num_envs):
            if self.resetting[i]:
                self._begin_episode(i, next_obs[i])
                continue
            self.adder.add(i, int(actions[i]), float(rewards[i]), frame_of(next_obs[i]), bool(terminated[i]),
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
        seed = self.restore_seed + env_steps
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
        self.adder.truncate_open_episodes()
        for i in range(self.num_envs):
            self._begin_episode(i, self.obs[i])

    def close(self) -> None:
        try:
            self.vector_env.close()
        except Exception:  # noqa: BLE001 (a broken environment may fail to close too; the run is saved)
            pass
