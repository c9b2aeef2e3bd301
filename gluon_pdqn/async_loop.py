"""Mode ``async``: actor-learners as in Mnih et al. 2016, served and trained by one MXNet thread (GA3C).

N actors (threads or processes, numpy only; see ``actors.py``) each step their own environment with their own
exploration and hand in rollouts of up to ``actors.t_max`` steps. This thread, the only one that calls
MXNet, loops: take every message that arrived; answer all waiting action requests with one batched forward
pass; apply one update from all rollouts that arrived; refresh the target network every
``actors.target_update_every`` env steps; log, evaluate and checkpoint by env steps as the replay modes do.

The actors never wait for an update, only for their answers, so acting and learning overlap; the price is
policy lag (how many updates old the parameters were that chose an action), which is logged.
"""
from __future__ import annotations

import signal
import time
from dataclasses import asdict
from multiprocessing import connection

import mxnet as mx
import numpy as np

from . import checkpoint, envs
from . import logging as metrics
from .actors import ActorPool, Rollout
from .config import Config
from .errors import EnvironmentFault, TrainingStopped, UserError
from .learners.async_learners import A3CLearner, AsyncQLearner
from .loops import Counters, RunBookkeeping, Summary, crossed, graceful_interrupts
from .parallel import parse_contexts

POLL_SECONDS = 1.0  # longest wait for a message before checking signals and that every actor lives


class _ActorLost(Exception):
    """An actor died or its environment failed: the learner is sound, so the run checkpoints, then stops."""

    def __init__(self, message: str, environment_fault: bool = False):
        super().__init__(message)
        self.environment_fault = environment_fault


def _died(actor: int) -> str:
    return f"actor {actor} ended unexpectedly"


class AsyncTraining(RunBookkeeping):
    """One run of mode ``async``; the same surface as ``loops.Training`` (``run`` returns a Summary).

    Args:
        cfg: resolved configuration (``actors`` section, ``run.ctx`` naming one device).
        run_dir: directory for everything the run writes (created by the caller).
        resume_bundle: a checkpoint bundle to continue from, or None.
        display: progress display (None: silent).

    With ``actors.backend = "process"`` the actors are spawned, so a script that runs this needs the
    ``if __name__ == "__main__":`` guard that spawned processes need.
    """

    def __init__(self, cfg: Config, run_dir: str, resume_bundle: str | None = None,
                 display: metrics.ProgressDisplay | None = None):
        self.cfg, self.run_dir = cfg, run_dir
        self.display = display or metrics.ProgressDisplay(enabled=False)
        self.spec = envs.describe(cfg.env)
        contexts = parse_contexts(cfg.run.ctx)
        if len(contexts) != 1:
            raise UserError(f"mode 'async' learns on one device; --ctx names {len(contexts)}")
        if cfg.env.num_envs != 1:
            self.display.message("note: mode async gives each actor one environment; env.num_envs is ignored")
        mx.random.seed(cfg.run.seed)  # parameter initialization only
        learner_class = A3CLearner if cfg.actors.algo == "a3c" else AsyncQLearner
        self.learner = learner_class(cfg, self.spec, contexts[0])
        self.counters = Counters()
        self.sessions = 0  # how many times this run was started: actors get fresh seeds each session
        self._init_bookkeeping()
        self._last_returns: list[float] = []  # the previous log window's episode returns (for the status line)
        if resume_bundle is not None:
            self._restore(resume_bundle)
        self.writer = metrics.MetricsWriter(run_dir, self.counters.env_steps if resume_bundle else None)

    # --- the loop ---------------------------------------------------------------------------------

    def run(self, stop_at: int | None = None) -> Summary:
        """Train until the step budget, the stop return, or a signal; always ends with a checkpoint."""
        cfg = self.cfg
        total = cfg.run.total_env_steps
        limit = min(total, stop_at) if stop_at is not None else total
        self.sessions += 1
        pool = ActorPool(cfg, env_seed=cfg.run.seed + 7919 * self.sessions)
        self._window = self._new_window(pool)
        session_start, wall_before = time.perf_counter(), self.counters.wall_seconds
        interrupted_by, lost = None, None
        waiting: dict[int, np.ndarray] = {}
        try:
            with graceful_interrupts() as interrupt:
                self._interrupt = interrupt
                while self.counters.env_steps < limit and self.solved is None and not self._out_of_time():
                    if interrupt["signal"] is not None:
                        interrupted_by = signal.Signals(interrupt["signal"]).name
                        break
                    try:
                        rollouts = self._serve(pool, waiting)
                    except _ActorLost as error:
                        lost = error
                        break
                    if not rollouts:
                        continue
                    before = self.counters.env_steps
                    self._take_in(rollouts)
                    result = self.learner.learn(rollouts)
                    self._take_in_outcome(result)
                    self.counters.learner_steps = self.learner.learner_steps
                    self._window["result"] = result
                    after = self.counters.env_steps
                    self.counters.wall_seconds = wall_before + time.perf_counter() - session_start
                    if crossed(before, after, cfg.actors.target_update_every):
                        self.learner.sync_target()
                    lost = self._periodic_duties(before, after, log=lambda: self._log(pool),
                                                 evaluate=self._greedy_evaluation, status=self._status)
                    if lost is not None:
                        break
                self.counters.wall_seconds = wall_before + time.perf_counter() - session_start
                bundle = self.save_checkpoint()  # still under the guard: a second Ctrl-C cannot cut it short
        finally:
            pool.close()
            self.writer.close()
        summary = self._finish(interrupted_by, bundle)
        if isinstance(lost, EnvironmentFault):
            raise self._report_fault(lost, bundle)
        if lost is not None:
            kind = EnvironmentFault if lost.environment_fault else TrainingStopped
            raise kind(f"{lost}; the work so far is in checkpoint {bundle}; continue with gluon-pdqn train "
                       f"--resume {self.run_dir}")
        return summary

    def _serve(self, pool: ActorPool, waiting: dict) -> list[Rollout]:
        """Take in what the actors sent, answer every actor that waits with one forward pass; return the
        rollouts that arrived."""
        rollouts = self._receive(pool, waiting)
        if waiting:
            order = sorted(waiting)
            values = self.learner.action_values(np.stack([waiting[i] for i in order]))
            for i, row in zip(order, values):
                try:
                    pool.connections[i].send(("values", row, self.counters.env_steps, self.learner.learner_steps))
                except OSError:  # it died between asking and being answered
                    raise _ActorLost(_died(i)) from None
            self._window["inference_batches"].append(len(order))
            waiting.clear()
        return rollouts

    def _receive(self, pool: ActorPool, waiting: dict) -> list[Rollout]:
        """Every message that has arrived (waiting at most POLL_SECONDS): requests into ``waiting``, rollouts out."""
        rollouts: list[Rollout] = []
        ready = connection.wait(pool.connections, timeout=POLL_SECONDS)
        if not ready:
            for i in range(len(pool.connections)):
                if not pool.alive(i):
                    raise _ActorLost(_died(i))
        for conn in ready:
            i = pool.index_of[conn]
            try:
                while conn.poll():
                    kind, *payload = conn.recv()
                    if kind == "act":
                        waiting[i] = payload[0]
                    elif kind == "rollout":
                        rollouts.append(payload[0])
                    elif kind == "error":
                        raise _ActorLost(payload[0], environment_fault=True)
            except (EOFError, ConnectionResetError):
                raise _ActorLost(_died(i)) from None
        return rollouts

    def _take_in(self, rollouts: list[Rollout]) -> None:
        """Count the rollouts' steps and episodes, and how old the parameters were that acted in them."""
        window = self._window
        for rollout in rollouts:
            steps = len(rollout.rewards)
            self.counters.env_steps += steps
            window["actor_steps"][rollout.actor] += steps
            window["lags"].append(float((self.learner.learner_steps - rollout.versions).mean()))
            for episode_return, length in rollout.episodes:
                self.counters.episodes += 1
                window["returns"].append(episode_return)
                window["actor_returns"][rollout.actor].append(episode_return)
                self.writer.episode(self.counters.env_steps, self.counters.episodes, rollout.actor,
                                    float(episode_return), int(length))

    # --- logging ----------------------------------------------------------------------------------

    def _new_window(self, pool: ActorPool) -> dict:
        count = len(pool.connections)
        return {"start": time.perf_counter(), "env_steps": self.counters.env_steps,
                "learner_steps": self.counters.learner_steps, "returns": [], "lags": [],
                "inference_batches": [], "actor_steps": np.zeros(count, dtype=np.int64),
                "actor_returns": [[] for _ in range(count)], "result": None}

    def _log(self, pool: ActorPool) -> None:
        window, c = self._window, self.counters
        elapsed = max(time.perf_counter() - window["start"], 1e-9)
        result = window["result"]
        epsilons = [s(c.env_steps) for s in pool.schedules] if self.cfg.actors.algo != "a3c" else [0.0]
        frame_skip = self.cfg.env.frame_skip if self.spec.is_atari else 1
        self.writer.scalars({
            metrics.ENV_STEPS: c.env_steps, metrics.FRAMES: c.env_steps * frame_skip,
            metrics.LEARNER_STEPS: c.learner_steps, metrics.EPISODES: c.episodes,
            metrics.WALL_SECONDS: round(c.wall_seconds, 3),
            metrics.EPISODIC_RETURN: float(np.mean(window["returns"])) if window["returns"] else float("nan"),
            metrics.EPSILON: float(np.mean(epsilons)),
            metrics.ENV_STEPS_PER_S: (c.env_steps - window["env_steps"]) / elapsed,
            metrics.UPDATES_PER_S: (c.learner_steps - window["learner_steps"]) / elapsed,
            metrics.TD_LOSS: result.loss() if result else float("nan"),
            metrics.MEAN_Q: result.mean_q() if result else float("nan"),
            metrics.GRAD_NORM: result.grad_norm if result else float("nan"),
            metrics.SKIPPED_UPDATES: c.skipped_updates,
            metrics.POLICY_LAG: float(np.mean(window["lags"])) if window["lags"] else float("nan"),
            metrics.INFERENCE_BATCH: (float(np.mean(window["inference_batches"]))
                                      if window["inference_batches"] else float("nan")),
        })
        self.writer.actors(c.env_steps, [
            {"actor": i, "final_epsilon": pool.schedules[i].final if self.cfg.actors.algo != "a3c" else "",
             "actor_env_steps": int(steps), "env_steps_per_s": steps / elapsed,
             "episodes": len(window["actor_returns"][i]),
             "mean_return": float(np.mean(window["actor_returns"][i])) if window["actor_returns"][i] else ""}
            for i, steps in enumerate(window["actor_steps"])])
        self._last_returns = window["returns"]
        self._window = self._new_window(pool)

    def _status(self) -> str:
        c, window = self.counters, self._window
        rate = c.env_steps / c.wall_seconds if c.wall_seconds > 0 else 0.0
        recent = window["returns"] or self._last_returns
        recent = f"{np.mean(recent[-20:]):.1f}" if recent else "-"
        lag = f"{np.mean(window['lags']):.1f}" if window["lags"] else "-"
        evaluation = f"{self.last_eval:.1f}" if self.last_eval is not None else "-"
        return (f"env steps {c.env_steps:,}/{self.cfg.run.total_env_steps:,}  {rate:,.0f} steps/s  "
                f"updates {c.learner_steps:,}  actors {self.cfg.actors.count}  lag {lag}  return {recent}  "
                f"eval {evaluation}")

    # --- checkpoints ------------------------------------------------------------------------------

    def save_checkpoint(self, best: bool = False) -> str:
        """Parameters, optimizer state and counters; actors' episodes in progress are not saved.

        ``best=True`` writes the same bundle as ``checkpoints/best`` (the policy of the best evaluation so far).
        """
        state = {
            "config": self.cfg.to_dict(),
            "env_spec": {"id": self.spec.id, "obs_shape": list(self.spec.obs_shape),
                         "n_actions": self.spec.n_actions},
            "counters": asdict(self.counters),
            "sessions": self.sessions,
            "eval": {"best": self.best_eval, "last": self.last_eval},
        }
        if best:
            return checkpoint.save_best(self.run_dir, state, self.learner.save)
        return checkpoint.save(self.run_dir, self.counters.env_steps, state, self.learner.save,
                               self.cfg.run.keep_checkpoints)

    def _restore(self, bundle: str) -> None:
        state = checkpoint.read_state(bundle)
        if state["env_spec"]["id"] != self.spec.id or state["env_spec"]["n_actions"] != self.spec.n_actions:
            raise UserError(f"checkpoint {bundle} is for {state['env_spec']['id']}, not {self.spec.id}")
        if "sessions" not in state:
            raise UserError(f"checkpoint {bundle} was not written by mode async")
        with checkpoint.reading(bundle, "its parameter or optimizer files"):
            self.learner.load(bundle)
        self.counters = Counters(**state["counters"])
        self.learner.learner_steps = self.counters.learner_steps
        self.sessions = state["sessions"]
        self.best_eval, self.last_eval = checkpoint.best_return(self.run_dir, state), state["eval"]["last"]
        self.notes.append("mode async: the actors' episodes in progress were not saved; they start new ones "
                          "with new seeds")
