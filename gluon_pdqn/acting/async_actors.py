"""Actors of mode ``async`` (Mnih et al. 2016), served as GA3C serves them (Babaeizadeh et al. 2017).

Each actor steps its own environment and explores on its own (numpy only: MXNet's Python front end is not
thread-safe). It talks to the one learner thread over its pipe of the actor pool (``pool.py``), the same way
whether it runs as a thread of the learner's process or as a process of its own:

    actor -> learner   ("act", obs)                 the values of obs, please
    learner -> actor   ("values", values, env_steps, version)   Q-values (or policy probabilities for a3c),
                                                    the run's env steps so far, the parameters' version
    learner -> actor   ("stop",)                    instead of values: end now
    actor -> learner   ("rollout", Rollout)         up to t_max steps of experience (no reply)

The learner answers "act" requests in batches (one forward pass for every actor waiting) and learns from the
rollouts as they arrive: :class:`AsyncCollector` is that serving side.
"""
from __future__ import annotations

import time

import numpy as np

from .. import envs, metrics
from ..config import Config
from ..envs import EnvSpec
from ..errors import EnvironmentFault
from ..exploration import EpsilonSchedule, action_rng, epsilon_greedy_one
from .checks import check_one, environment_call
from .pool import POLL_SECONDS, ActorPool, total_mib
from .protocol import Collected, Episode, Rollout

STOP = ("stop",)


def run_actor(index: int, conn, cfg: Config, spec: EnvSpec, epsilon: EpsilonSchedule, seed: int) -> None:
    """Act until the learner says stop (or the pipe closes): the body of an actor thread or process.

    Every environment call goes through ``checks``: a fault of the environment ends the actor with an
    ``EnvironmentFault``, which the pool reports to the learner.
    """
    env_id = cfg.env.id
    env = environment_call(env_id, "making the environment", envs.make_env, cfg.env)
    rng = action_rng(seed)
    sample_policy = cfg.actors.algo == "a3c"
    t_max, n_actions = cfg.actors.t_max, spec.n_actions

    obs_shape, obs_dtype = tuple(spec.obs_shape), np.dtype(spec.obs_dtype)

    def checked(observation, reward=0.0) -> np.ndarray:
        observation = np.asarray(observation)
        check_one(env_id, reward, observation, obs_shape, obs_dtype)
        return observation

    try:
        obs = checked(environment_call(env_id, "the first reset", env.reset, seed=seed)[0])
        steps: list[tuple] = []
        episodes: list[tuple[float, int]] = []
        episode_return, episode_length = 0.0, 0
        while True:
            conn.send(("act", obs))
            reply = conn.recv()
            if reply[0] == "stop":
                return
            _, values, env_steps, version = reply
            if sample_policy:  # a3c: the policy's own probabilities explore
                action = int(rng.choice(n_actions, p=values))
            else:
                action = epsilon_greedy_one(lambda: values, epsilon(env_steps), n_actions, rng)
            next_obs, reward, terminated, truncated, _ = environment_call(env_id, "a training step", env.step, action)
            checked(next_obs, reward)
            steps.append((obs, action, float(reward), version))
            episode_return += float(reward)
            episode_length += 1
            done = terminated or truncated
            if done:
                episodes.append((episode_return, episode_length))
                episode_return, episode_length = 0.0, 0
            if done or len(steps) == t_max:
                conn.send(("rollout", Rollout(
                    actor=index, obs=np.stack([s[0] for s in steps]),
                    actions=np.array([s[1] for s in steps], dtype=np.int64),
                    rewards=np.array([s[2] for s in steps], dtype=np.float32),
                    versions=np.array([s[3] for s in steps], dtype=np.int64),
                    bootstrap_obs=np.asarray(next_obs), terminated=bool(terminated), episodes=episodes)))
                steps, episodes = [], []
            obs = checked(environment_call(env_id, "a reset", env.reset)[0]) if done else next_obs
    finally:
        try:
            env.close()
        except Exception:  # noqa: BLE001 (a broken environment may fail to close too)
            pass


class AsyncCollector:
    """The learner's side of mode async: serve the actors' action requests, take in their rollouts.

    Each ``collect`` takes every message that arrived (waiting up to POLL_SECONDS for one), answers every
    actor that waits for values with one batched forward pass (``action_values``), and returns the rollouts
    that arrived, for the rollout learner to learn from. The actors never wait for an update, only for their
    answers: the price is policy lag (how many updates old the parameters were that chose an action).

    Args:
        cfg: the run's configuration (``actors`` section).
        spec: the environment's spaces.
        policy: ``action_values(obs)`` (what actors choose from) and ``learner_steps`` (the rollout learner).
        schedules: each actor's exploration schedule (``exploration.actor_schedules``).
    """

    checkpoint_arrays = ()  # the actors' episodes in progress are not saved: a resumed run starts new ones

    def __init__(self, cfg: Config, spec: EnvSpec, policy, schedules: list[EpsilonSchedule]):
        self.cfg, self.spec, self.policy = cfg, spec, policy
        self.schedules = schedules
        self.samples_policy = cfg.actors.algo == "a3c"  # the policy's own probabilities explore
        # Actor i seeds its environment and its actions from env_seed + 1000 * (i + 1); a resumed run adds its
        # env steps so far, so its actors do not replay the first session's episodes.
        self.env_seed = cfg.run.seed + 7919
        self.pool: ActorPool | None = None
        self._waiting: dict[int, np.ndarray] = {}  # actor -> the observation it wants values for
        self._window = self._new_window()
        self.broken = False

    def start(self, seed: int) -> None:
        """A fresh run: the actors begin their episodes themselves when the session opens."""

    def open_session(self) -> None:
        """Start the actors (threads or spawned processes, ``actors.backend``)."""
        seed = self.env_seed
        self.pool = ActorPool("async actor", run_actor,
                              lambda i: (self.cfg, self.spec, self.schedules[i], seed + 1000 * (i + 1)),
                              self.cfg.actors.count, backend=self.cfg.actors.backend, duplex=True)
        self._window = self._new_window()

    def collect(self, env_steps: int, learning: bool, phase_seconds: dict) -> Collected:
        """The rollouts that arrived, with their env steps and episodes; every waiting actor is answered.

        ``learning`` does not apply: a rollout learner learns from the first rollout on. The time spent
        waiting for messages and answering counts as acting in ``phase_seconds``.
        """
        started = time.perf_counter()
        collected = Collected()
        try:
            messages = self.pool.receive(POLL_SECONDS)
        except EnvironmentFault:
            self.broken = True
            raise
        rollouts = []
        for index, (kind, payload) in messages:
            if kind == "act":
                self._waiting[index] = payload
            else:
                rollouts.append(payload)
        if self._waiting:
            self._answer(env_steps)
        for rollout in rollouts:
            self._take_in(rollout, collected)
        phase_seconds["act"] += time.perf_counter() - started
        return collected

    def _answer(self, env_steps: int) -> None:
        """One forward pass for every actor that waits; each gets its row, the run's env steps and the version."""
        order = sorted(self._waiting)
        values = self.policy.action_values(np.stack([self._waiting[i] for i in order]))
        version = self.policy.learner_steps
        for i, row in zip(order, values):
            self.pool.send(i, ("values", row, env_steps, version))
        self._window["inference_batches"].append(len(order))
        self._waiting.clear()

    def _take_in(self, rollout: Rollout, collected: Collected) -> None:
        """Count a rollout's steps and episodes, and how old the parameters were that acted in it."""
        window = self._window
        steps = len(rollout.rewards)
        collected.rollouts.append(rollout)
        window["lags"].append(float((self.policy.learner_steps - rollout.versions).mean()))
        for episode_return, length in rollout.episodes:
            # A rollout ends where its episode ends, so its episode ended after all of its steps.
            collected.episodes.append(Episode(rollout.actor, float(episode_return), int(length),
                                              collected.env_steps + steps))
            window["actor_returns"][rollout.actor].append(episode_return)
        collected.env_steps += steps
        window["actor_steps"][rollout.actor] += steps

    def after_updates(self, env_steps: int) -> None:
        """The actors ask for values with every step: nothing to publish."""

    def epsilon(self, env_steps: int) -> float:
        """The actors' mean exploration rate (0 for a3c, whose policy explores by sampling)."""
        if self.samples_policy:
            return 0.0
        return float(np.mean([schedule(env_steps) for schedule in self.schedules]))

    # --- figures ----------------------------------------------------------------------------------

    def _new_window(self) -> dict:
        count = self.cfg.actors.count
        return {"start": time.perf_counter(), "lags": [], "inference_batches": [],
                "actor_steps": np.zeros(count, dtype=np.int64), "actor_returns": [[] for _ in range(count)]}

    def window_figures(self) -> tuple[dict, list[dict]]:
        """(metrics: policy lag and inference batch over the window, rows of actors.csv), and a new window."""
        window, self._window = self._window, self._new_window()
        elapsed = max(time.perf_counter() - window["start"], 1e-9)
        rows = [{"actor": i, "final_epsilon": "" if self.samples_policy else self.schedules[i].final,
                 "actor_env_steps": int(steps), "env_steps_per_s": steps / elapsed,
                 "episodes": len(window["actor_returns"][i]),
                 "mean_return": float(np.mean(window["actor_returns"][i])) if window["actor_returns"][i] else ""}
                for i, steps in enumerate(window["actor_steps"])]
        memory = self.pool.resident_mib() if self.pool is not None else [""] * len(rows)
        for row, mib in zip(rows, memory):
            row["rss_mib"] = mib
        figures = {metrics.ACTORS_RSS_MIB: total_mib(memory),
                   metrics.POLICY_LAG: float(np.mean(window["lags"])) if window["lags"] else float("nan"),
                   metrics.INFERENCE_BATCH: (float(np.mean(window["inference_batches"]))
                                             if window["inference_batches"] else float("nan"))}
        return figures, rows

    # --- checkpoints and the end ------------------------------------------------------------------

    def checkpoint_state(self, with_envs: bool) -> tuple[dict, None]:
        return {}, None

    def restore(self, arrays, env_state, env_steps: int, notes: list[str]) -> None:
        """Continue at ``env_steps``: the actors start new episodes, with seeds they have not used."""
        self.env_seed = self.cfg.run.seed + 7919 + env_steps
        notes.append("mode async: the actors' episodes in progress were not saved; they start new ones with new "
                     "seeds")

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close(stop_reply=STOP)
            self.pool = None
