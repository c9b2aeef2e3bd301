"""The training loop of every pair of collector and learner, with its checkpoint and resume.

All randomness of the loop lives in numpy Generators whose states are checkpointed (MXNet cannot save
its RNG state; it is used only to initialize parameters), so a resumed run on the CPU continues exactly
as the uninterrupted run would have.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import traceback
from dataclasses import asdict, dataclass, field

import numpy as np

from .. import build, checkpoint, metrics, networks
from ..acting import ActorLost, Collected
from ..config import Config
from ..envs import protocols
from ..errors import EnvironmentFault, TrainingStopped, UserError
from .evaluation import evaluate, report_evaluation

ENVIRONMENT_ERROR_LOG = "environment-error.log"  # tracebacks of the environment's faults, in the run directory


@dataclass
class Counters:
    """Progress of a run, by unit (see metrics.py for the names)."""

    env_steps: int = 0
    learner_steps: int = 0
    episodes: int = 0
    skipped_updates: int = 0
    evaluations: int = 0
    wall_seconds: float = 0.0  # training time so far, summed over resumed sessions


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


@dataclass
class Summary:
    """What a finished (or interrupted) run reports."""

    run_dir: str
    counters: dict
    solved_at_env_steps: int | None = None
    solved_at_seconds: float | None = None
    last_eval_mean: float | None = None
    best_eval_mean: float | None = None
    eval_protocol: str | None = None
    interrupted_by: str | None = None
    checkpoint: str | None = None
    notes: list = field(default_factory=list)


@contextlib.contextmanager
def graceful_interrupts():
    """Turn SIGINT and SIGTERM into a flag the loop checks, so it can checkpoint before it exits."""
    received: dict[str, int | None] = {"signal": None}

    def handler(signum, _frame):
        received["signal"] = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class Training:
    """One training run of every mode: a collector, a learner, a replay between them, and the run's bookkeeping.

    The builder (``build.build``) wires the parts for the run's pair: who acts is the collector (``acting``: an
    in-process vector env, apex actor processes, or async actors), who learns is the learner (single, data,
    model, ensemble, ps, or a rollout learner). The loop is the same for every pair: collect, learn from the
    new experience (the updates it makes due from the replay, or one update from a rollout learner's
    rollouts), log, evaluate, checkpoint.

    Args:
        cfg: resolved configuration.
        run_dir: directory for everything the run writes (created by the caller).
        resume_bundle: a checkpoint bundle to continue from, or None for a fresh run.
        display: progress display (None: silent).
    """

    def __init__(self, cfg: Config, run_dir: str, resume_bundle: str | None = None,
                 display: metrics.ProgressDisplay | None = None):
        self.cfg, self.run_dir = cfg, run_dir
        self.display = display or metrics.ProgressDisplay(enabled=False)
        parts = build.build(cfg)
        self.spec, self.topology, self.learner, self.job = parts.spec, parts.topology, parts.learner, parts.job
        self.collector, self.replay, self.adder = parts.acting.collector, parts.acting.replay, parts.acting.adder
        self.rng, self.env_step_budget = parts.rng, parts.env_step_budget
        self.member_evaluations = parts.member_evaluations  # an ensemble's members, evaluated one by one
        self.notes: list[str] = []
        for note in parts.notes:
            self.display.message(f"note: {note}")
        self.best_eval: float | None = None
        self.last_eval: float | None = None
        self.solved: tuple[int, float] | None = None  # (env steps, seconds) of the first evaluation >= stop_return
        self.eval_protocol = protocols.resolve(self.cfg, self.spec.is_atari)
        self._interrupt: dict = {"signal": None}  # the loop's graceful_interrupts flag, while it runs
        self._stop_on_return = True  # whether reaching run.stop_return ends the run
        self._consecutive_skips = 0  # updates in a row whose gradient was not finite
        self._nonfinite_stop: int | None = None  # the skips in a row that stopped the run (run.max_nonfinite_updates)
        # A worker of a parameter-server job acts with its own seed and epsilon, runs its share of the env
        # steps, and writes its figures under workers/ (rank 0 writes the run directory).
        seed = parts.seed
        if self.topology.rank > 0:
            self.run_dir = run_dir = metrics.worker_run_dir(run_dir, self.topology.rank)
            os.makedirs(run_dir, exist_ok=True)
            if resume_bundle is not None:  # each worker continues from its own checkpoint
                resume_bundle = checkpoint.resolve(run_dir)
        if not self.job.stops_together:
            # Only rank 0 evaluates. In dist_sync its wish to stop once solved is a vote that ends every worker
            # at the same update; in dist_async no vote reaches the others, which would run on alone.
            self._stop_on_return = False
            self.notes.append("mode dist with dist_async runs the whole step budget (run.stop_return is not "
                              "applied)")
        converted = f" ({self.spec.conversion})" if self.spec.conversion else ""
        memory = ("no replay (it learns from the actors' rollouts)" if self.replay is None else
                  f"replay {cfg.replay.capacity:,} transitions, {self.replay.nbytes / 2**20:,.1f} MiB")
        self.display.message(f"observations {self.spec.obs_shape} {self.spec.obs_dtype}{converted}: network "
                             f"{networks.resolve_name(cfg.network, self.spec)}, {cfg.run.precision} updates; {memory}")
        self.counters = Counters()
        self._last_logged = {"loss": float("nan"), "returns": []}
        self._timing_due = True  # time the next update per device
        self._pending: list = []  # (replay indices, StepResult) of updates not yet taken in by _settle
        self._newest_bundle: tuple[int, str] | None = None  # (env steps, path) of the last checkpoint written
        self._resumed_bundle: tuple[int, str] | None = None  # (env steps, path) of the checkpoint resumed from
        self._evaluation_steps = 0  # env steps of evaluation episodes (progress, for a launched job's watchdog)
        self.checkpoint_listeners: list = []  # called with (env steps, path) after each checkpoint is written
        try:
            if resume_bundle is None:
                self.collector.start(seed)
            else:
                self._restore(resume_bundle)
        except BaseException:
            self.collector.close()
            raise
        self.writer = metrics.MetricsWriter(run_dir, self.counters.env_steps if resume_bundle else None)

    # --- the loop ---------------------------------------------------------------------------------

    def run(self, stop_at: int | None = None) -> Summary:
        """Train until the step budget, the stop return, or a signal; always ends with a checkpoint.

        ``stop_at`` ends the session early at that env step, as an interruption would, without changing
        any schedule (they all run over ``run.total_env_steps``).
        """
        cfg = self.cfg
        frame_skip = cfg.env.frame_skip if self.spec.is_atari else 1
        total = self.env_step_budget
        limit = min(total, stop_at) if stop_at is not None else total
        window = LogWindow(time.perf_counter(), self.counters.env_steps, self.counters.learner_steps)
        session_start, wall_before = time.perf_counter(), self.counters.wall_seconds
        last_result, interrupted_by, fault, lost = None, None, None, None
        collector = self.collector
        try:
            collector.open_session()
            with graceful_interrupts() as interrupt:
                self._interrupt = interrupt
                job = self.job  # a parameter-server worker's part in its job (Solo for a whole run)
                while True:
                    if interrupt["signal"] is not None:
                        interrupted_by = signal.Signals(interrupt["signal"]).name
                    done = (interrupted_by is not None or self.counters.env_steps >= limit
                            or self.solved is not None or self._out_of_time() or self._nonfinite_stop is not None)
                    if job.agree_to_stop(done):  # dist_sync: all workers at once
                        break
                    before = self.counters.env_steps
                    # Experience: random actions during warm-up, epsilon-greedy after (apex actors keep their own).
                    try:
                        collected = collector.collect(before, before >= cfg.replay.learning_starts,
                                                      window.phase_seconds)
                    except EnvironmentFault as error:
                        fault = error
                        break
                    except ActorLost as error:
                        lost = error
                        break
                    if not collected.env_steps:
                        # Nothing arrived but action requests (async actors), or the envs only reset: no update
                        # can be due and no multiple crossed, so skip the bookkeeping.
                        continue
                    self._count(collected, window)
                    stored = time.perf_counter()
                    after = self.counters.env_steps
                    if self.replay is None:
                        last_result = self._learn_from_rollouts(collected, after) or last_result
                    else:
                        last_result = self._learn_from_replay(before, after, after / total) or last_result
                    window.phase_seconds["learn"] += time.perf_counter() - stored
                    self.counters.wall_seconds = wall_before + time.perf_counter() - session_start
                    fault = self._periodic_duties(
                        before, after, log=lambda: self._log(window, last_result, collector.epsilon(after), frame_skip),
                        evaluate=self._evaluate if self.topology.is_chief else None,
                        status=lambda: self._status(collector.epsilon(after), window))
                    if fault is not None:
                        break
                self.counters.wall_seconds = wall_before + time.perf_counter() - session_start
                if fault is not None:
                    collector.broken = True  # its state cannot be captured; a resume starts new episodes
                if self._newest_bundle is not None and self._newest_bundle[0] == self.counters.env_steps:
                    bundle = self._newest_bundle[1]  # a signal during the periodic checkpoint: it is the final one
                else:
                    bundle = self.save_checkpoint()  # still under the guard: a second Ctrl-C cannot cut it short
                if interrupted_by is None and fault is None and lost is None:
                    job.leave()  # no worker of a parameter-server job may leave before the others
        finally:
            self.writer.close()
            collector.close()
        stopped_by = (interrupted_by or (None if fault is None else "EnvironmentFault") or (lost and "ActorLost")
                      or (self._nonfinite_stop and "NonFiniteUpdates"))
        summary = self._finish(stopped_by, bundle)
        if fault is not None:
            raise self._report_fault(fault, bundle)
        if lost is not None:
            raise TrainingStopped(f"{lost}; the work so far is in checkpoint {bundle}; continue with gluon-pdqn "
                                  f"train --resume {self.run_dir}")
        if self._nonfinite_stop is not None:
            # A skipped update changes no parameter: the checkpoint holds the last good ones.
            raise TrainingStopped(f"{self._nonfinite_stop} consecutive updates had NaN or infinite gradients at env "
                                  f"step {self.counters.env_steps:,}; stopped with the last good parameters in "
                                  f"checkpoint {bundle}. Lower optim.learning_rate or set optim.max_grad_norm in a "
                                  f"new run, or continue this one with gluon-pdqn train --resume {self.run_dir}")
        return summary

    def _count(self, collected: Collected, window: LogWindow) -> None:
        """Take in what the collector added: env steps, and the episodes that ended (episodes.csv)."""
        start = self.counters.env_steps
        for episode in collected.episodes:
            self.counters.episodes += 1
            window.returns.append(episode.episode_return)
            self.writer.episode(start + episode.steps_before, self.counters.episodes, episode.stream,
                                episode.episode_return, episode.length)
        self.counters.env_steps = start + collected.env_steps

    def _learn_from_replay(self, before: int, after: int, progress: float):
        """Run the updates the env steps ``before`` -> ``after`` made due: ``agent.updates_per_train`` for every
        ``agent.train_every`` crossed, once learning started and the replay holds a batch. Returns the last
        update's StepResult, or None."""
        cfg = self.cfg
        due = (after // cfg.agent.train_every - before // cfg.agent.train_every) * cfg.agent.updates_per_train
        if not (due and after >= cfg.replay.learning_starts and self.replay.can_sample(cfg.replay.batch_size)):
            return None
        if cfg.run.overlap_acting:
            # The last round's updates ran while the envs stepped; act on their result from now.
            self._settle()
            self.learner.refresh_policy()
        for _ in range(due):
            result = self._update(progress, timed=self._timing_due)
        if not cfg.run.overlap_acting:
            self._settle()
        self.collector.after_updates(after)
        return result

    def _learn_from_rollouts(self, collected: Collected, env_steps: int):
        """A rollout learner's one update from the rollouts that arrived (None if none did)."""
        if not collected.rollouts:
            return None
        result = self.learner.learn(collected.rollouts, env_steps)
        self._take_in_outcome(result)
        self.counters.learner_steps = self.learner.learner_steps
        return result

    def _update(self, progress: float, timed: bool = False):
        """Sample a batch and start one update; its outcome is taken in by ``_settle``."""
        cfg = self.cfg.replay
        beta = cfg.beta_start + (1.0 - cfg.beta_start) * min(progress, 1.0)
        batch = self.replay.sample(cfg.batch_size, beta=beta)
        if timed:  # the first update of each log window is timed per device
            result, figures = self.learner.timed_step(batch)
            self.writer.devices(self.counters.env_steps, self.learner.learner_steps, figures)
            self._timing_due = False
        else:
            result = self.learner.step(batch)
        self._pending.append((batch.indices, result))
        self.counters.learner_steps = self.learner.learner_steps
        return result

    def _settle(self) -> None:
        """Take in the outcome of the updates started since the last call: skips, priorities, counters.

        Its first read waits for those updates to finish. With Adam the learner itself never waits (see
        ``StepResult``), so this is the one wait of a training round; PER priorities therefore change
        once per round, as in Ape-X, not after every update.
        """
        pending, self._pending = self._pending, []
        for indices, result in pending:
            if self._take_in_outcome(result) and self.adder.prioritized:
                self.adder.learned(indices, result.td_errors())
        self.counters.learner_steps = self.learner.learner_steps

    # --- evaluation and logging -------------------------------------------------------------------

    def _evaluate(self) -> None:
        self.learner.refresh_policy()  # evaluate the latest parameters, also when acting from a snapshot
        seed = self._greedy_evaluation()
        for q_functions, take_returns in self.member_evaluations:
            # Each ensemble member's own greedy return sets the mixing weights of the targets.
            protocol = self.eval_protocol
            with self.learner.without_noise():
                member_returns = [evaluate(q, protocol.env, self.spec.n_actions, self.cfg.run.eval_episodes,
                                           protocol.epsilon, seed, interrupted=self._interrupted)
                                  for q in q_functions()]
            if any(r is None for r in member_returns):
                return
            member_means = [float(r.mean()) for r in member_returns]
            weights = take_returns(member_means)
            self.writer.members(self.counters.env_steps, member_means, weights)

    def _log(self, window: LogWindow, result, epsilon: float, frame_skip: int) -> None:
        now = time.perf_counter()
        elapsed = max(now - window.start, 1e-9)
        c = self.counters
        loss = result.loss() if result else float("nan")
        self._last_logged = {"loss": loss, "returns": window.returns}
        job = self.job
        traffic = job.traffic_figures()
        collector_figures, actor_rows = self.collector.window_figures()  # mode apex: policy lag, per-actor rows
        if actor_rows:
            self.writer.actors(c.env_steps, actor_rows)
        row = {
            metrics.ENV_STEPS: c.env_steps, metrics.FRAMES: c.env_steps * frame_skip,
            metrics.LEARNER_STEPS: c.learner_steps, metrics.EPISODES: c.episodes,
            metrics.WALL_SECONDS: round(c.wall_seconds, 3),
            metrics.EPISODIC_RETURN: float(np.mean(window.returns)) if window.returns else float("nan"),
            metrics.EPSILON: epsilon,
            metrics.ENV_STEPS_PER_S: (c.env_steps - window.env_steps) / elapsed,
            metrics.UPDATES_PER_S: (c.learner_steps - window.learner_steps) / elapsed,
            metrics.TD_LOSS: loss,
            metrics.MEAN_Q: result.mean_q() if result else float("nan"),
            metrics.GRAD_NORM: result.grad_norm if result else float("nan"),
            metrics.SKIPPED_UPDATES: c.skipped_updates,
            metrics.RSS_MIB: metrics.resident_mib(),
            **{metrics.LOOP_PHASES[phase]: 1e3 * seconds / max(c.env_steps - window.env_steps, 1)
               for phase, seconds in window.phase_seconds.items()},
            **{metrics.dist_metric(key): value for key, value in traffic.items()},
            **collector_figures,
        }
        if self.replay is not None:
            row[metrics.REPLAY_RATIO] = c.learner_steps * self.cfg.replay.batch_size / max(c.env_steps, 1)
        self.writer.scalars(row)
        # Each worker of a job posts its figures, and rank 0 gets them all (a whole run gets none).
        board = job.exchange_figures({name: row.get(name, float("nan")) for name in metrics.WORKER_FIGURES})
        if board:
            self.writer.workers(c.env_steps, board)
        window.restart(now, c.env_steps, c.learner_steps)
        self._timing_due = True

    def _status(self, epsilon: float, window: LogWindow) -> str:
        c = self.counters
        rate = c.env_steps / c.wall_seconds if c.wall_seconds > 0 else 0.0
        recent = window.returns or self._last_logged["returns"]
        recent = f"{np.mean(recent[-20:]):.1f}" if recent else "-"
        loss = self._last_logged["loss"]
        evaluation = f"{self.last_eval:.1f}" if self.last_eval is not None else "-"
        return (f"env steps {c.env_steps:,}/{self.env_step_budget:,}  {rate:,.0f} steps/s  "
                f"updates {c.learner_steps:,}  eps {epsilon:.3f}  return {recent}  loss "
                f"{'-' if loss != loss else f'{loss:.3g}'}  eval {evaluation}")

    # --- evaluations, stop conditions, faults and the summary ------------------------------------

    def _out_of_time(self) -> bool:
        """Whether the run's time budget (``run.max_seconds`` of training, over all sessions) is spent."""
        return 0 < self.cfg.run.max_seconds <= self.counters.wall_seconds

    def _take_in_outcome(self, result) -> bool:
        """Count a finished update; return whether it applied.

        A skipped update (non-finite gradient) is counted as such (the learner uncounts it from its
        ``learner_steps``), and after ``run.max_nonfinite_updates`` in a row the loop stops and checkpoints.
        """
        if self.learner.settle(result):
            self._consecutive_skips = 0
            return True
        self.counters.skipped_updates += 1
        self._consecutive_skips += 1
        if self._consecutive_skips >= self.cfg.run.max_nonfinite_updates:
            self._nonfinite_stop = self._consecutive_skips
        return False

    def _greedy_evaluation(self) -> int:
        """Evaluate the learner's greedy policy, log it, note whether the run is solved; return the seed used."""
        cfg = self.cfg
        self.counters.evaluations += 1
        seed = cfg.run.seed + 1_000_003 * self.counters.evaluations
        protocol = self.eval_protocol
        with self.learner.without_noise():  # a noisy network is evaluated by its means
            returns = evaluate(self.learner.greedy_values, protocol.env, self.spec.n_actions, cfg.run.eval_episodes,
                               protocol.epsilon, seed, interrupted=self._interrupted)
        if returns is None:  # a signal arrived: the loop stops next and checkpoints
            return seed
        mean = report_evaluation(returns, self.counters, self.writer, self.display, protocol.name)
        self.last_eval = mean
        if self.best_eval is None or mean > self.best_eval:
            # Only a strictly better evaluation replaces the kept best policy.
            self.best_eval = mean
            self.save_checkpoint(best=True)
        if self._stop_on_return and cfg.run.stop_return is not None and mean >= cfg.run.stop_return:
            self.solved = (self.counters.env_steps, self.counters.wall_seconds)
        return seed

    def _periodic_duties(self, before: int, after: int, log, evaluate, status) -> EnvironmentFault | None:
        """What every loop does as env steps pass (``before`` -> ``after``): log, evaluate (unless ``evaluate``
        is None), checkpoint, refresh the status line. Returns the fault of an evaluation's environment."""
        run = self.cfg.run
        if crossed(before, after, run.log_every):
            log()
        if evaluate is not None and run.eval_every and crossed(before, after, run.eval_every):
            try:
                evaluate()
            except EnvironmentFault as error:
                return error
        if run.checkpoint_every and crossed(before, after, run.checkpoint_every):
            self.save_checkpoint()
        if self.display.due():
            self.display.update(status())
        return None

    def _interrupted(self) -> bool:
        self._evaluation_steps += 1  # evaluation asks before each of its steps: progress while the loop waits
        return self._interrupt["signal"] is not None

    @property
    def newest_checkpoint(self) -> tuple[int, str] | None:
        """(env steps, path) of the newest checkpoint of this run: written in this session, or resumed from."""
        return self._newest_bundle or self._resumed_bundle

    def progress(self) -> tuple[int, int, int]:
        """Env steps, updates, and evaluation steps so far: what a worker of a launched job reports."""
        return self.counters.env_steps, self.counters.learner_steps, self._evaluation_steps

    def _report_fault(self, fault: EnvironmentFault, bundle: str) -> EnvironmentFault:
        """The one-line report of an environment's fault; its traceback goes to ``environment-error.log``."""
        log = os.path.join(self.run_dir, ENVIRONMENT_ERROR_LOG)
        with open(log, "a") as f:
            f.write(f"{fault} at env step {self.counters.env_steps}\n")
            # A fault in an actor's environment (modes apex, async) carries the actor's traceback.
            f.write(getattr(fault, "remote_traceback", None) or
                    "".join(traceback.format_exception(fault.__cause__ or fault)))
        return EnvironmentFault(f"{fault} at env step {self.counters.env_steps:,} (traceback in {log}); the work "
                                f"so far is in checkpoint {bundle}: fix the environment, then continue with "
                                f"gluon-pdqn train --resume {self.run_dir}")

    def _finish(self, interrupted_by: str | None, bundle: str) -> Summary:
        """The run's summary, also written to ``summary.json``."""
        summary = Summary(run_dir=self.run_dir, counters=asdict(self.counters),
                          solved_at_env_steps=self.solved[0] if self.solved else None,
                          solved_at_seconds=self.solved[1] if self.solved else None,
                          last_eval_mean=self.last_eval, best_eval_mean=self.best_eval,
                          eval_protocol=self.eval_protocol.describe(),
                          interrupted_by=interrupted_by, checkpoint=bundle, notes=self.notes)
        with open(os.path.join(self.run_dir, "summary.json"), "w") as f:
            json.dump(asdict(summary), f, indent=2)
        return summary

    # --- checkpoints ------------------------------------------------------------------------------

    def save_checkpoint(self, best: bool = False) -> str:
        """Write a complete bundle of everything needed to continue this run exactly.

        ``best=True`` writes ``checkpoints/best`` instead, for the policy of the best evaluation so far: the same
        bundle without the replay and the environments' state (a run resumed from it refills its replay).
        """
        self._settle()
        save_replay = self.replay is not None and self.cfg.replay.save_in_checkpoint and not best
        loop_arrays, env_state = self.collector.checkpoint_state(with_envs=save_replay)
        replay_arrays, replay_scalars = self.replay.state_dict() if save_replay else ({}, None)

        def write_files(directory: str) -> None:
            self.learner.save(directory)
            np.savez(os.path.join(directory, "loop.npz"), **loop_arrays)
            if save_replay:
                np.savez(os.path.join(directory, "replay.npz"), **replay_arrays)

        state = {
            "config": self.cfg.to_dict(),
            "env_spec": {"id": self.spec.id, "obs_shape": list(self.spec.obs_shape),
                         "n_actions": self.spec.n_actions},
            "counters": asdict(self.counters),
            "rng": self.rng.bit_generator.state,
            "replay": replay_scalars,
            "env_snapshot": env_state,
            "eval": {"best": self.best_eval, "last": self.last_eval},
        }
        if best:
            return checkpoint.save_best(self.run_dir, state, write_files)
        bundle = checkpoint.save(self.run_dir, self.counters.env_steps, state, write_files,
                                 self.cfg.run.keep_checkpoints)
        self._newest_bundle = (self.counters.env_steps, bundle)
        for listener in self.checkpoint_listeners:
            listener(*self._newest_bundle)
        return bundle

    def _restore(self, bundle: str) -> None:
        state = checkpoint.read_state(bundle)
        if state["env_spec"]["id"] != self.spec.id or state["env_spec"]["n_actions"] != self.spec.n_actions:
            raise UserError(f"checkpoint {bundle} is for {state['env_spec']['id']}, not {self.spec.id}")
        with checkpoint.reading(bundle, "its parameter or optimizer files"):
            self.learner.load(bundle)
        self.notes.extend(self.learner.restore_notes())
        self.counters = Counters(**state["counters"])
        self._resumed_bundle = (self.counters.env_steps, bundle)
        self.learner.learner_steps = self.counters.learner_steps
        self.best_eval, self.last_eval = checkpoint.best_return(self.run_dir, state), state["eval"]["last"]
        loop, env_state = None, None
        if self.collector.checkpoint_arrays:
            arrays = checkpoint.load_arrays(bundle, "loop.npz")
            with checkpoint.reading(bundle, "loop.npz"):
                loop = {key: arrays[key] for key in self.collector.checkpoint_arrays}
        if self.replay is not None:  # (a rollout learner's bundle, also of older versions, has no replay or rng)
            with checkpoint.reading(bundle, f"the 'rng' of {checkpoint.STATE_FILE}"):
                self.rng.bit_generator.state = state["rng"]
            if state["replay"] is not None:
                with checkpoint.reading(bundle, "replay.npz"):
                    self.replay.load_state_dict(checkpoint.load_arrays(bundle, "replay.npz"), state["replay"])
                # The envs' saved state is only of use beside the replay that holds their episodes so far.
                env_state = state["env_snapshot"]
            else:
                self.notes.append("checkpoint holds no replay: updates wait until a batch is collected again")
        self.collector.restore(loop, env_state, self.counters.env_steps, self.notes)


def crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in (before, after]."""
    return after // every > before // every

