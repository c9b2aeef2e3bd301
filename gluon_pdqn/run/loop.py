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

from .. import build, checkpoint, metrics, networks
from ..acting import Collected
from ..config import Config
from ..envs import protocols
from ..errors import EnvironmentFault, PartLost, TrainingStopped
from ..updates import Outcomes
from .checkpointer import Checkpointer
from .evaluation import evaluate, report_evaluation
from .progress import Counters, LogWindow, crossed, metrics_row, status_line

ENVIRONMENT_ERROR_LOG = "environment-error.log"  # tracebacks of the environment's faults, in the run directory


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
    """One training run of every pair: a collector, a learner, and the loop between them.

    The builder (``build.build``) wires the parts for the run's pair: who acts is the collector (``acting``: an
    in-process vector env, apex actor processes, or async actors), who learns is the learner (single, data,
    model, ensemble, ps, or a rollout learner), and how the one learns from the other is ``updates`` (from a
    replay, or from rollouts). The loop is the same for every pair: collect, learn, and the periodic duties
    (metric rows, evaluation, checkpoints: ``Checkpointer``).

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
        self.collector, self.replay, self.updates = parts.acting.collector, parts.acting.replay, parts.updates
        self.env_step_budget = parts.env_step_budget
        self.member_evaluations = parts.member_evaluations  # an ensemble's members, evaluated one by one
        self.notes: list[str] = []
        for note in parts.notes:
            self.display.message(f"note: {note}")
        self.best_eval: float | None = None
        self.last_eval: float | None = None
        self.solved: tuple[int, float] | None = None  # (env steps, seconds) of the first evaluation >= stop_return
        self.eval_protocol = protocols.resolve(self.cfg, self.spec.is_atari)
        self._interrupt: dict = {"signal": None}  # the loop's graceful_interrupts flag, while it runs
        # Where a session's end has got to, for the job's launcher (parallel.launcher.ProgressReports): the loop
        # has stopped (``ending``, in a job once its workers agreed), then its last checkpoint is on disk
        # (``final_checkpoint``: env steps, bundle).
        self.ending = False
        self.final_checkpoint: tuple[int, str] | None = None
        self._stop_on_return = True  # whether reaching run.stop_return ends the run
        # A worker of a parameter-server job acts with its own seed and epsilon, runs its share of the env
        # steps, and writes its figures under workers/ (rank 0 writes the run directory).
        self.job_run_dir = run_dir  # (a job's: what its resume names, for every worker)
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
        self.display.message(f"observations {self.spec.obs_shape} {self.spec.obs_dtype}{converted}: network "
                             f"{networks.resolve_name(cfg.network, self.spec)}, {cfg.run.precision} updates; "
                             f"{self.updates.describe()}")
        self.counters = Counters()
        self.outcomes = Outcomes(self.learner, self.counters, cfg.run.max_nonfinite_updates)
        self.checkpoints = Checkpointer(run_dir, cfg, self.spec, self.learner, self.collector, self.updates)
        self._last_logged = {"loss": float("nan"), "returns": []}
        self._evaluation_steps = 0  # env steps of evaluation episodes (progress, for a launched job's watchdog)
        try:
            if resume_bundle is None:
                self.collector.start(parts.seed)
            else:
                saved, evaluations = self.checkpoints.restore(resume_bundle, self.notes)
                self.counters.take(saved)
                self.best_eval, self.last_eval = evaluations["best"], evaluations["last"]
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
        limit = min(self.env_step_budget, stop_at) if stop_at is not None else self.env_step_budget
        window = LogWindow(time.perf_counter(), self.counters.env_steps, self.counters.learner_steps)
        session_start, wall_before = time.perf_counter(), self.counters.wall_seconds
        last_result, interrupted_by, fault, lost = None, None, None, None
        collector, updates, outcomes = self.collector, self.updates, self.outcomes
        try:
            collector.open_session()
            with graceful_interrupts() as interrupt:
                self._interrupt = interrupt
                job = self.job  # a parameter-server worker's part in its job (Solo for a whole run)
                # A part outside this process that ended (an actor; another process of the job, when a collective
                # with it fails: the vote to stop, an update's allreduce, the figures' exchange) stops the loop.
                try:
                    while True:
                        if interrupt["signal"] is not None:
                            interrupted_by = signal.Signals(interrupt["signal"]).name
                        spent = self.counters.env_steps >= limit  # at the same env step on every worker of a job
                        done = (interrupted_by is not None or spent or self.solved is not None or self._out_of_time()
                                or outcomes.stopped is not None)
                        if job.agree_to_stop(done, self.counters.env_steps, spent):  # dist_sync, horovod: all stop
                            break
                        before = self.counters.env_steps
                        # Experience: random actions during warm-up, epsilon-greedy after (apex actors keep their own).
                        try:
                            collected = collector.collect(before, before >= cfg.replay.learning_starts,
                                                          window.phase_seconds)
                        except EnvironmentFault as error:
                            fault = error
                            break
                        if not collected.env_steps:
                            # Nothing arrived but action requests (async actors), or the envs only reset: no update
                            # can be due and no multiple crossed, so skip the bookkeeping.
                            continue
                        self._count(collected, window)
                        stored = time.perf_counter()
                        after = self.counters.env_steps
                        last_result = updates.learn(collected, before, after, outcomes) or last_result
                        self.counters.learner_steps = self.learner.learner_steps
                        if updates.timed is not None:  # the update timed per device (one per log window)
                            self.writer.devices(after, *updates.timed)
                            updates.timed = None
                        window.phase_seconds["learn"] += time.perf_counter() - stored
                        self.counters.wall_seconds = wall_before + time.perf_counter() - session_start
                        fault = self._periodic_duties(
                            before, after,
                            log=lambda: self._log(window, last_result, collector.epsilon(after), frame_skip),
                            evaluate=self._evaluate if self.topology.is_chief else None,
                            status=lambda: self._status(collector.epsilon(after), window))
                        if fault is not None:
                            break
                except PartLost as error:
                    lost = error
                except Exception as error:  # noqa: BLE001 (re-raised unless the job tells it is a lost part)
                    # A failed collective's error reaches whatever computation reads its arrays next.
                    lost = job.lost_part(error)
                    if lost is None:
                        raise
                self.ending = True
                self.counters.wall_seconds = wall_before + time.perf_counter() - session_start
                if fault is not None:
                    collector.broken = True  # its state cannot be captured; a resume starts new episodes
                newest = self.checkpoints.newest
                if newest is not None and newest[0] == self.counters.env_steps:
                    bundle = newest[1]  # a signal during the periodic checkpoint: it is the final one
                else:
                    bundle = self.save_checkpoint()  # still under the guard: a second Ctrl-C cannot cut it short
                self.final_checkpoint = (self.counters.env_steps, bundle)
                if interrupted_by is None and fault is None and lost is None:
                    job.leave()  # no worker of a parameter-server job may leave before the others
        finally:
            self.writer.close()
            collector.close()
        stopped_by = (interrupted_by or (None if fault is None else "EnvironmentFault")
                      or (lost and type(lost).__name__) or (outcomes.stopped and "NonFiniteUpdates"))
        summary = self._finish(stopped_by, bundle)
        if fault is not None:
            raise self._report_fault(fault, bundle)
        if lost is not None:
            raise TrainingStopped(f"{lost}; the work so far is in checkpoint {bundle}; continue with "
                                  f"{self._resume_command()}")
        if outcomes.stopped is not None:
            # A skipped update changes no parameter: the checkpoint holds the last good ones.
            raise TrainingStopped(f"{outcomes.stopped} consecutive updates had NaN or infinite gradients at env "
                                  f"step {self.counters.env_steps:,}; stopped with the last good parameters in "
                                  f"checkpoint {bundle}. Lower optim.learning_rate or set optim.max_grad_norm in a "
                                  f"new run, or continue this one with {self._resume_command()}")
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

    def _settle(self) -> None:
        """Take in the outcome of every update still running (before a checkpoint reads the parameters)."""
        self.updates.settle(self.outcomes)
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
        """Write the window's row of metrics.csv (and of actors.csv and workers.csv), then open the next window."""
        now = time.perf_counter()
        c = self.counters
        collector_figures, actor_rows = self.collector.window_figures()  # apex, async: policy lag, per-actor rows
        if actor_rows:
            self.writer.actors(c.env_steps, actor_rows)
        extra = {**{metrics.dist_metric(key): value for key, value in self.job.traffic_figures().items()},
                 **collector_figures, **self.updates.figures(c)}
        row = metrics_row(c, window, result, epsilon, frame_skip, now, extra)
        self._last_logged = {"loss": row[metrics.TD_LOSS], "returns": window.returns}
        self.writer.scalars(row)
        # Each worker of a job posts its figures, and rank 0 gets them all (a whole run gets none).
        board = self.job.exchange_figures(metrics.worker_board(row, actor_rows))
        if board:
            self.writer.workers(c.env_steps, board)
        window.restart(now, c.env_steps, c.learner_steps)
        self.updates.timing_due = True

    def _status(self, epsilon: float, window: LogWindow) -> str:
        return status_line(self.counters, self.env_step_budget, epsilon, window.returns or self._last_logged["returns"],
                           self._last_logged["loss"], self.last_eval)

    # --- evaluations, stop conditions, faults and the summary ------------------------------------

    def _out_of_time(self) -> bool:
        """Whether the run's time budget (``run.max_seconds`` of training, over all sessions) is spent."""
        return 0 < self.cfg.run.max_seconds <= self.counters.wall_seconds

    def _greedy_evaluation(self) -> int:
        """Evaluate the learner's greedy policy, log it, keep it if it is the best so far, note whether the run
        is solved; return the seed used.

        An evaluation that beats the best so far, or reaches ``run.stop_return``, is a candidate: the best of many
        evaluations of ``run.eval_episodes`` is biased upward (the winner's curse), so a candidate is played
        again on ``run.confirm_episodes`` episodes of other seeds, and that mean is what is kept as the best
        (``best_eval``, ``checkpoints/best``) and what must reach ``run.stop_return`` for the run to be solved.
        """
        cfg = self.cfg
        self.counters.evaluations += 1
        seed = cfg.run.seed + 1_000_003 * self.counters.evaluations
        returns = self._play_greedy(cfg.run.eval_episodes, seed)
        if returns is None:  # a signal arrived: the loop stops next and checkpoints
            return seed
        mean = float(returns.mean())
        self.last_eval = mean
        goal = cfg.run.stop_return if self._stop_on_return else None
        reaches_goal = goal is not None and mean >= goal
        confirmation = None
        if cfg.run.confirm_episodes and (self.best_eval is None or mean > self.best_eval or reaches_goal):
            # Other seeds than any evaluation's (those start at seed + 1_000_003 k and use at most 16 envs).
            confirmation = self._play_greedy(cfg.run.confirm_episodes, seed + 499_979)
            if confirmation is None:
                return seed
        report_evaluation(returns, self.counters, self.writer, self.display, self.eval_protocol.name, confirmation)
        kept = float(confirmation.mean()) if confirmation is not None else mean
        if self.best_eval is None or kept > self.best_eval:
            # Only a strictly better (confirmed) evaluation replaces the kept best policy.
            self.best_eval = kept
            self.save_checkpoint(best=True)
        if goal is not None and reaches_goal and kept >= goal:
            self.solved = (self.counters.env_steps, self.counters.wall_seconds)
        return seed

    def _play_greedy(self, episodes: int, seed: int):
        """Returns of ``episodes`` of the learner's greedy policy under the evaluation protocol (None if interrupted)."""
        protocol = self.eval_protocol
        with self.learner.without_noise():  # a noisy network is evaluated by its means
            return evaluate(self.learner.greedy_values, protocol.env, self.spec.n_actions, episodes,
                            protocol.epsilon, seed, interrupted=self._interrupted)

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

    def progress(self) -> tuple[int, int, int]:
        """Env steps, updates, and evaluation steps so far: what a worker of a launched job reports."""
        return self.counters.env_steps, self.counters.learner_steps, self._evaluation_steps

    def _resume_command(self) -> str:
        """How a user continues this run: ``train --resume``, inside the same launch for a worker of a job."""
        if build.is_job(self.cfg):
            return f"the same gluon-pdqn launch with -- train --resume {self.job_run_dir}"
        return f"gluon-pdqn train --resume {self.run_dir}"

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
                                f"{self._resume_command()}")

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
        """Write a complete bundle of everything needed to continue this run exactly (``best``: the policy of
        the best evaluation so far, as ``checkpoints/best``; see ``Checkpointer.save``)."""
        self._settle()
        return self.checkpoints.save(self.counters, {"best": self.best_eval, "last": self.last_eval}, best=best)

    @property
    def newest_checkpoint(self) -> tuple[int, str] | None:
        """(env steps, path) of the newest checkpoint of this run: written in this session, or resumed from."""
        return self.checkpoints.newest_bundle

    @property
    def checkpoint_listeners(self) -> list:
        """Called with (env steps, path) after each checkpoint is written (a launched job's reports)."""
        return self.checkpoints.listeners
