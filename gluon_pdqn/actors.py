"""Actors of mode ``async``: each steps its own environment and explores on its own (numpy only).

An actor never touches MXNet (its Python front end is not thread-safe). It talks to the one learner thread
over a ``multiprocessing`` pipe, the same way whether it runs as a thread of the learner's process or as a
process of its own:

    actor -> learner   ("act", obs)                 the values of obs, please
    learner -> actor   ("values", values, env_steps, version)   Q-values (or policy probabilities for a3c),
                                                    the run's env steps so far, the parameters' version
    learner -> actor   ("stop",)                    instead of values: end now
    actor -> learner   ("rollout", Rollout)         up to t_max steps of experience (no reply)
    actor -> learner   ("error", text, traceback)   the actor failed (one line: what was raised) and has ended

The learner answers "act" requests in batches (one forward pass for every actor waiting) and applies the
rollouts as they arrive (GA3C, Babaeizadeh et al. 2017): :class:`ActorPoolCollector` is that serving side, the
collector of mode async in the one training loop (``loops.Training``).
"""
from __future__ import annotations

import multiprocessing
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing import connection

import numpy as np

from . import envs
from .collectors import ActorLost, Collected, Episode
from .config import Config
from .errors import EnvironmentFault
from .exploration import EpsilonSchedule, action_rng, apex_epsilons, sampled_final_epsilons

STOP = ("stop",)
POLL_SECONDS = 1.0  # longest wait for a message before checking signals and that every actor lives


@dataclass
class Rollout:
    """Consecutive steps of one actor's episode: s_0..s_{T-1}, a, r, and where it ended."""

    actor: int
    obs: np.ndarray  # (T, *obs_shape)
    actions: np.ndarray  # (T,) int64
    rewards: np.ndarray  # (T,) float32
    versions: np.ndarray  # (T,) parameter version that chose each action
    bootstrap_obs: np.ndarray  # s_T: the state after the last step
    terminated: bool  # s_T is terminal (no bootstrap); a truncated episode bootstraps from s_T
    episodes: list = field(default_factory=list)  # (return, length) of episodes that ended in this rollout


def actor_epsilon_schedules(cfg: Config) -> list[EpsilonSchedule]:
    """One epsilon schedule per actor: from epsilon_start to that actor's final epsilon over decay_steps.

    The final epsilons derive from ``run.seed`` alone, so a resumed run keeps them.
    """
    count = cfg.actors.count
    if cfg.actors.epsilons == "apex":
        finals = apex_epsilons(count)
    else:
        finals = sampled_final_epsilons(count, np.random.default_rng(cfg.run.seed))
    e = cfg.exploration
    return [EpsilonSchedule(e.schedule, e.epsilon_start, float(final), e.decay_steps) for final in finals]


def run_actor(index: int, cfg: Config, epsilon: EpsilonSchedule, seed: int, conn) -> None:
    """Act until the learner says stop (or the pipe closes). The body of an actor thread or process."""
    try:
        _act(index, cfg, epsilon, seed, conn)
    except (EOFError, BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass  # the learner has gone or is stopping: nothing left to tell it
    except BaseException as e:  # anything else is reported, so the learner can end the run with a clear error
        try:
            conn.send(("error", f"actor {index} failed: {type(e).__name__}: {e}", traceback.format_exc()))
        except (OSError, ValueError):
            pass
    finally:
        conn.close()


def _act(index: int, cfg: Config, epsilon: EpsilonSchedule, seed: int, conn) -> None:
    env = envs.make_env(cfg.env)
    rng = action_rng(seed)
    sample_policy = cfg.actors.algo == "a3c"
    t_max = cfg.actors.t_max
    try:
        obs, _ = env.reset(seed=seed)
        n_actions = env.action_space.n
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
            elif rng.random() < epsilon(env_steps):
                action = int(rng.integers(n_actions))
            else:
                action = int(np.argmax(values))
            next_obs, reward, terminated, truncated, _ = env.step(action)
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
            obs = env.reset()[0] if done else next_obs
    finally:
        env.close()


def _process_main(index, cfg, epsilon, seed, conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the learner's to handle: it stops the actors
    run_actor(index, cfg, epsilon, seed, conn)


class ActorPool:
    """Start ``cfg.actors.count`` actors as threads or processes; ``connections[i]`` talks to actor i.

    Processes are spawned (not forked: the learner's process holds MXNet's engine threads, which a fork
    would copy in an unusable state) and import only the numpy side of the package.

    Args:
        cfg: the run's configuration.
        env_seed: actor i seeds its environment and its action sampling with ``env_seed + 1000 * (i + 1)``.
    """

    def __init__(self, cfg: Config, env_seed: int):
        self.backend = cfg.actors.backend
        self.schedules = actor_epsilon_schedules(cfg)
        context = multiprocessing.get_context("spawn")
        self.connections, self._workers = [], []
        try:
            for i in range(cfg.actors.count):
                ours, theirs = context.Pipe(duplex=True)
                args = (i, cfg, self.schedules[i], env_seed + 1000 * (i + 1), theirs)
                if self.backend == "thread":
                    worker = threading.Thread(target=run_actor, args=args, name=f"actor-{i}", daemon=True)
                else:
                    worker = context.Process(target=_process_main, args=args, name=f"actor-{i}", daemon=True)
                self.connections.append(ours)
                self._workers.append(worker)
                worker.start()
                if self.backend == "process":
                    theirs.close()  # the child holds its own copy; ours must close for EOF to reach it
        except BaseException:
            self.close()
            raise
        self.index_of = {conn: i for i, conn in enumerate(self.connections)}  # (the learner's hot loop looks up)

    def alive(self, index: int) -> bool:
        return self._workers[index].is_alive()

    def close(self, timeout: float = 10.0) -> None:
        """End every actor: tell the waiting ones to stop, close the pipes, join (and kill what is left)."""
        for conn in self.connections:
            try:
                while conn.poll():
                    message = conn.recv()
                    if message[0] == "act":
                        conn.send(STOP)
            except (EOFError, OSError):
                pass
            try:
                conn.close()
            except OSError:
                pass
        for worker in self._workers:
            if worker.ident is None:
                continue  # never started
            worker.join(timeout)
            if isinstance(worker, multiprocessing.process.BaseProcess) and worker.is_alive():
                worker.kill()
                worker.join(timeout)


class ActorPoolCollector:
    """The learner's side of mode async: serve the actors' action requests, take in their rollouts.

    Each ``collect`` takes every message that arrived (waiting up to POLL_SECONDS for one), answers every
    actor that waits for values with one batched forward pass of the learner (``action_values``), and returns
    the rollouts that arrived, for the learner to learn from. The actors never wait for an update, only for
    their answers: the price is policy lag (how many updates old the parameters were that chose an action).

    Args:
        cfg: the run's configuration (``actors`` section).
        learner: a rollout learner (``action_values``, ``learner_steps``).
    """

    checkpoint_arrays = ()  # the actors' episodes in progress are not saved: a resumed run starts new ones

    def __init__(self, cfg: Config, learner):
        self.cfg, self.learner = cfg, learner
        self.schedules = actor_epsilon_schedules(cfg)
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
        self.pool = ActorPool(self.cfg, env_seed=self.env_seed)
        self._window = self._new_window()

    def collect(self, env_steps: int, learning: bool, phase_seconds: dict) -> Collected:
        """The rollouts that arrived, with their env steps and episodes; every waiting actor is answered.

        ``learning`` does not apply: a rollout learner learns from the first rollout on. The time spent
        waiting for messages and answering counts as acting in ``phase_seconds``.
        """
        started = time.perf_counter()
        collected = Collected()
        rollouts = self._receive()
        if self._waiting:
            self._answer(env_steps)
        for rollout in rollouts:
            self._take_in(rollout, collected)
        phase_seconds["act"] += time.perf_counter() - started
        return collected

    def _receive(self) -> list[Rollout]:
        """Every message that has arrived: requests into ``_waiting``, rollouts out."""
        pool, rollouts = self.pool, []
        ready = connection.wait(pool.connections, timeout=POLL_SECONDS)
        if not ready:
            for i in range(len(pool.connections)):
                if not pool.alive(i):
                    raise ActorLost(_died(i))
        for conn in ready:
            i = pool.index_of[conn]
            try:
                while conn.poll():
                    kind, *payload = conn.recv()
                    if kind == "act":
                        self._waiting[i] = payload[0]
                    elif kind == "rollout":
                        rollouts.append(payload[0])
                    elif kind == "error":
                        self.broken = True
                        fault = EnvironmentFault(payload[0])
                        fault.remote_traceback = payload[1]  # (written to the run's environment-error.log)
                        raise fault
            except (EOFError, ConnectionResetError):
                raise ActorLost(_died(i)) from None
        return rollouts

    def _answer(self, env_steps: int) -> None:
        """One forward pass for every actor that waits; each gets its row, the run's env steps and the version."""
        order = sorted(self._waiting)
        values = self.learner.action_values(np.stack([self._waiting[i] for i in order]))
        version = self.learner.learner_steps
        for i, row in zip(order, values):
            try:
                self.pool.connections[i].send(("values", row, env_steps, version))
            except OSError:  # it died between asking and being answered
                raise ActorLost(_died(i)) from None
        self._window["inference_batches"].append(len(order))
        self._waiting.clear()

    def _take_in(self, rollout: Rollout, collected: Collected) -> None:
        """Count a rollout's steps and episodes, and how old the parameters were that acted in it."""
        window = self._window
        steps = len(rollout.rewards)
        collected.rollouts.append(rollout)
        window["lags"].append(float((self.learner.learner_steps - rollout.versions).mean()))
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
        from . import logging as metrics

        window, self._window = self._window, self._new_window()
        elapsed = max(time.perf_counter() - window["start"], 1e-9)
        rows = [{"actor": i, "final_epsilon": "" if self.samples_policy else self.schedules[i].final,
                 "actor_env_steps": int(steps), "env_steps_per_s": steps / elapsed,
                 "episodes": len(window["actor_returns"][i]),
                 "mean_return": float(np.mean(window["actor_returns"][i])) if window["actor_returns"][i] else ""}
                for i, steps in enumerate(window["actor_steps"])]
        figures = {metrics.POLICY_LAG: float(np.mean(window["lags"])) if window["lags"] else float("nan"),
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
            self.pool.close()
            self.pool = None


def _died(actor: int) -> str:
    return f"actor {actor} ended unexpectedly"
