"""Actors of mode ``async``: each steps its own environment and explores on its own (numpy only).

An actor never touches MXNet (its Python front end is not thread-safe). It talks to the one learner thread
over a ``multiprocessing`` pipe, the same way whether it runs as a thread of the learner's process or as a
process of its own:

    actor -> learner   ("act", obs)                 the values of obs, please
    learner -> actor   ("values", values, env_steps, version)   Q-values (or policy probabilities for a3c),
                                                    the run's env steps so far, the parameters' version
    learner -> actor   ("stop",)                    instead of values: end now
    actor -> learner   ("rollout", Rollout)         up to t_max steps of experience (no reply)
    actor -> learner   ("error", text)              the actor failed (one line: what was raised) and has ended

The learner answers "act" requests in batches (one forward pass for every actor waiting) and applies the
rollouts as they arrive (GA3C, Babaeizadeh et al. 2017).
"""
from __future__ import annotations

import multiprocessing
import signal
import threading
from dataclasses import dataclass, field

import numpy as np

from . import envs
from .config import Config
from .exploration import EpsilonSchedule, action_rng, apex_epsilons, sampled_final_epsilons

STOP = ("stop",)


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
            conn.send(("error", f"actor {index} failed: {type(e).__name__}: {e}"))
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
