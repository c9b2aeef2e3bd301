"""Metric names, the CSV and TensorBoard writers of a run directory, and the progress display.

The names are a contract shared by every mode, the plots and ``compare``: define once, log everywhere.
"""
from __future__ import annotations

import csv
import os
import sys
import time

from .config import job_actor_index
from .errors import StorageFault

# Counters (units: env_steps are agent decisions, frames = env_steps x frame skip, learner_steps are updates).
ENV_STEPS = "env_steps"
FRAMES = "frames"
LEARNER_STEPS = "learner_steps"
EPISODES = "episodes"
WALL_SECONDS = "wall_seconds"
# Scalars logged every run.log_every env steps.
EPISODIC_RETURN = "charts/episodic_return"  # mean return of the episodes finished in the window
EPSILON = "charts/epsilon"
ENV_STEPS_PER_S = "charts/env_steps_per_s"
UPDATES_PER_S = "charts/updates_per_s"
TD_LOSS = "losses/td_loss"
MEAN_Q = "values/mean_q"
GRAD_NORM = "losses/grad_norm"
SKIPPED_UPDATES = "losses/skipped_updates"  # non-finite updates skipped so far
EVAL_MEAN_RETURN = "eval/mean_return"
# Where the loop's thread spends its time, in ms per env step over the window: choosing actions (which also
# waits for updates still computing when acting uses the online network), stepping the environments, storing
# the transitions, and learning (sampling batches, starting updates, taking in their outcomes).
LOOP_ACT_MS = "loop/act_ms"
LOOP_ENV_MS = "loop/env_ms"
LOOP_STORE_MS = "loop/store_ms"
LOOP_LEARN_MS = "loop/learn_ms"
LOOP_PHASES = {"act": LOOP_ACT_MS, "env": LOOP_ENV_MS, "store": LOOP_STORE_MS, "learn": LOOP_LEARN_MS}
# Mode async: how old the parameters were that chose the actions of an update's rollouts (in updates), and
# how many actors each batched inference served.
POLICY_LAG = "async/policy_lag"
INFERENCE_BATCH = "async/inference_batch"
# Mode apex: how many updates old the parameters were that chose the actions handed in over the window.
ACTOR_POLICY_LAG = "actors/policy_lag"
# Resident memory (MiB) of the learner's process and of its actor processes together: what a long run holds.
RSS_MIB = "system/rss_mib"
ACTORS_RSS_MIB = "system/actors_rss_mib"
# Transitions sampled per transition collected so far (updates x batch / env steps), in every mode.
REPLAY_RATIO = "charts/replay_ratio"
# Mode dist, per worker: an upper bound on the server updates the last gradients of a pull interval missed
# (mean and max over the window's intervals), the median timed push+pull round trip, and the pushes so far.
def dist_metric(figure: str) -> str:
    """The metric name of a figure of ``Learner.traffic_figures``."""
    return f"dist/{figure}"


STALENESS = dist_metric("staleness")
STALENESS_MAX = dist_metric("staleness_max")
ROUND_TRIP_MS = dist_metric("round_trip_ms")
PUSHES = dist_metric("pushes")

METRIC_COLUMNS = [ENV_STEPS, FRAMES, LEARNER_STEPS, EPISODES, WALL_SECONDS, EPISODIC_RETURN, EPSILON,
                  ENV_STEPS_PER_S, UPDATES_PER_S, TD_LOSS, MEAN_Q, GRAD_NORM, SKIPPED_UPDATES, *LOOP_PHASES.values(),
                  POLICY_LAG, INFERENCE_BATCH, STALENESS, STALENESS_MAX, ROUND_TRIP_MS, PUSHES, ACTOR_POLICY_LAG,
                  REPLAY_RATIO, RSS_MIB, ACTORS_RSS_MIB]
EPISODE_COLUMNS = [ENV_STEPS, EPISODES, "env_index", "return", "length"]
EVAL_COLUMNS = [ENV_STEPS, LEARNER_STEPS, WALL_SECONDS, "mean_return", "median_return", "min_return",
                "max_return", "std_return", "episodes", "protocol", "confirmed_mean_return", "confirmed_episodes"]

DEVICE_COLUMNS = [ENV_STEPS, LEARNER_STEPS, "device", "forward_backward_ms", "idle_ms", "kvstore_ms", "update_ms",
                  "step_ms"]

METRICS_CSV = "metrics.csv"
EPISODES_CSV = "episodes.csv"
EVAL_CSV = "eval.csv"
DEVICES_CSV = "devices.csv"
MEMBERS_CSV = "members.csv"
MEMBER_COLUMNS = [ENV_STEPS, "member", "mean_return", "weight"]
WORKERS_CSV = "workers.csv"
WORKERS_DIR = "workers"  # mode dist: where the workers other than rank 0 write, one directory each
WORKER_FIGURES = [ENV_STEPS, LEARNER_STEPS, EPISODES, ENV_STEPS_PER_S, UPDATES_PER_S, EPISODIC_RETURN, EPSILON,
                  STALENESS, STALENESS_MAX, ROUND_TRIP_MS, PUSHES, ACTOR_POLICY_LAG,
                  REPLAY_RATIO]  # what each worker posts to rank 0
WORKER_COLUMNS = [ENV_STEPS, "rank", *(f"worker/{name.split('/')[-1]}" for name in WORKER_FIGURES)]
# Rank 0 of a job also sums its workers' latest posts (job.csv) and, with apex actors on each worker, lists
# every actor of the job by its index in the job's epsilon ladder (job_actors.csv).
JOB_CSV = "job.csv"
JOB_COLUMNS = [ENV_STEPS, "workers", "actors", "env_steps_per_s", "updates_per_s", "min_actor_env_steps_per_s",
               "max_actor_env_steps_per_s", "policy_lag", "replay_ratio"]
JOB_ACTORS_CSV = "job_actors.csv"
JOB_ACTOR_COLUMNS = [ENV_STEPS, "rank", "actor", "job_actor", "final_epsilon", "env_steps_per_s"]
ACTOR_BOARD = ("final_epsilon", "env_steps_per_s")  # what a worker posts per apex actor (see worker_board)
ACTORS_CSV = "actors.csv"
ACTOR_COLUMNS = [ENV_STEPS, "actor", "final_epsilon", "actor_env_steps", "env_steps_per_s", "episodes",
                 "mean_return", "rss_mib"]
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def resident_mib(pid: int | str = "self") -> float:
    """Resident memory of process ``pid`` in MiB (from /proc; NaN when it is gone or /proc is not there)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE_BYTES / 2**20
    except (OSError, IndexError, ValueError):
        return float("nan")


def worker_board(row: dict, actor_rows: list[dict]) -> dict:
    """What a worker of a job posts to rank 0 at a log: ``WORKER_FIGURES`` of its metrics row, then per actor
    (apex actors on each worker) its final epsilon and env steps/s over the window."""
    posted = {name: row.get(name, float("nan")) for name in WORKER_FIGURES}
    for actor in actor_rows:
        posted.update({_actor_figure(actor["actor"], name): actor[name] for name in ACTOR_BOARD})
    return posted


def _actor_figure(actor: int, name: str) -> str:
    return f"apex_actor/{actor}/{name}"


def _job_actor_rows(board: list[dict]) -> list[dict]:
    """Every actor's posted figures on the board, with its rung of the job's epsilon ladder."""
    rows = []
    for worker in board:
        count = sum(1 for name in worker if name.startswith("apex_actor/")) // len(ACTOR_BOARD)
        for i in range(count):
            rows.append({"rank": worker["rank"], "actor": i, "job_actor": job_actor_index(worker["rank"], count, i),
                         **{name: worker[_actor_figure(i, name)] for name in ACTOR_BOARD}})
    return rows


def job_figures(board: list[dict]) -> tuple[dict, list[dict]]:
    """Rank 0's view of the job from every worker's latest post: (a row of job.csv, rows of job_actors.csv).

    Env steps/s and updates/s are the sums over the workers that posted; policy lag and replay ratio their mean.
    """
    actor_rows = _job_actor_rows(board)
    rates = [a["env_steps_per_s"] for a in actor_rows if a["env_steps_per_s"] == a["env_steps_per_s"]]

    def mean_of(name):
        values = [w[name] for w in board if w[name] == w[name]]
        return sum(values) / len(values) if values else float("nan")

    job = {"workers": len(board), "actors": len(actor_rows),
           "env_steps_per_s": sum(w[ENV_STEPS_PER_S] for w in board if w[ENV_STEPS_PER_S] == w[ENV_STEPS_PER_S]),
           "updates_per_s": sum(w[UPDATES_PER_S] for w in board if w[UPDATES_PER_S] == w[UPDATES_PER_S]),
           "min_actor_env_steps_per_s": min(rates, default=float("nan")),
           "max_actor_env_steps_per_s": max(rates, default=float("nan")),
           "policy_lag": mean_of(ACTOR_POLICY_LAG), "replay_ratio": mean_of(REPLAY_RATIO)}
    return job, actor_rows


def worker_run_dir(run_dir: str, rank: int) -> str:
    """Where worker ``rank`` of a dist job writes: the run directory itself for rank 0, workers/rank-R/ else."""
    return run_dir if rank == 0 else os.path.join(run_dir, WORKERS_DIR, f"rank-{rank}")


def _truncate_csv(path: str, max_env_steps: int) -> None:
    """Drop rows logged after ``max_env_steps``: a resumed run replays them from its checkpoint."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
        fields = rows[0].keys() if rows else None
    if fields is None:
        return
    kept = [r for r in rows if float(r[ENV_STEPS]) <= max_env_steps]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(kept)


def _adopt_columns(path: str, columns: list[str]) -> None:
    """Rewrite ``path`` under ``columns`` if its header differs (a run resumed by a version that logs more)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames == columns:
            return
        rows = list(reader)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


class _CsvTable:
    def __init__(self, path: str, columns: list[str]):
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        if not new:
            _adopt_columns(path, columns)
        self._file = open(path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=columns, extrasaction="ignore")
        if new:
            self._writer.writeheader()

    def write(self, row: dict) -> None:
        try:
            self._writer.writerow(row)
            self._file.flush()
        except OSError as e:
            raise StorageFault(f"cannot write {self._file.name}: {e.strerror or e}; the newest complete checkpoint "
                               "is intact. Free space (or restore write permission) and resume the run") from None

    def close(self) -> None:
        self._file.close()


class MetricsWriter:
    """Writes a run's metrics to CSV files and TensorBoard events in ``run_dir``.

    Args:
        run_dir: the run directory.
        resume_env_steps: when resuming, rows logged after the checkpoint's env step are dropped first.
    """

    def __init__(self, run_dir: str, resume_env_steps: int | None = None):
        if resume_env_steps is not None:
            for name in (METRICS_CSV, EPISODES_CSV, EVAL_CSV, DEVICES_CSV, MEMBERS_CSV, ACTORS_CSV, WORKERS_CSV,
                         JOB_CSV, JOB_ACTORS_CSV):
                _truncate_csv(os.path.join(run_dir, name), resume_env_steps)
        self._metrics = _CsvTable(os.path.join(run_dir, METRICS_CSV), METRIC_COLUMNS)
        self._episodes = _CsvTable(os.path.join(run_dir, EPISODES_CSV), EPISODE_COLUMNS)
        self._evals = _CsvTable(os.path.join(run_dir, EVAL_CSV), EVAL_COLUMNS)
        self._devices = _CsvTable(os.path.join(run_dir, DEVICES_CSV), DEVICE_COLUMNS)
        self._members = None  # members.csv exists only for ensembles
        self._actors = None  # actors.csv only for modes async and apex
        self._workers = None  # workers.csv and job.csv only for rank 0 of mode dist
        self._job = None
        self._job_actors = None  # job_actors.csv only for rank 0 of a job with apex actors on each worker
        self._run_dir = run_dir
        from tensorboardX import SummaryWriter  # imported late: it is slow to import and only needed here

        self._tensorboard = SummaryWriter(logdir=os.path.join(run_dir, "tensorboard"), flush_secs=10)

    def scalars(self, values: dict) -> None:
        self._metrics.write(values)
        step = int(values[ENV_STEPS])
        for name, value in values.items():
            if "/" in name and value is not None and value == value:
                self._tensorboard.add_scalar(name, value, step)

    def episode(self, env_steps: int, episodes: int, env_index: int, episode_return: float, length: int) -> None:
        self._episodes.write({ENV_STEPS: env_steps, EPISODES: episodes, "env_index": env_index,
                              "return": episode_return, "length": length})

    def evaluation(self, row: dict) -> None:
        self._evals.write(row)
        self._tensorboard.add_scalar(EVAL_MEAN_RETURN, row["mean_return"], int(row[ENV_STEPS]))

    def devices(self, env_steps: int, learner_steps: int, figures: list[dict]) -> None:
        """One timed update's per-device figures (see Learner.timed_step)."""
        for row in figures:
            self._devices.write({ENV_STEPS: env_steps, LEARNER_STEPS: learner_steps, **row})
            for key in ("forward_backward_ms", "idle_ms", "kvstore_ms"):
                self._tensorboard.add_scalar(f"devices/{row['device']}/{key}", row[key], env_steps)

    def members(self, env_steps: int, returns, weights) -> None:
        """An ensemble's per-member greedy returns and softmax weights after an evaluation."""
        if self._members is None:
            self._members = _CsvTable(os.path.join(self._run_dir, MEMBERS_CSV), MEMBER_COLUMNS)
        for member, (mean_return, weight) in enumerate(zip(returns, weights)):
            self._members.write({ENV_STEPS: env_steps, "member": member, "mean_return": mean_return,
                                 "weight": weight})
            self._tensorboard.add_scalar(f"members/{member}/mean_return", mean_return, env_steps)
            self._tensorboard.add_scalar(f"members/{member}/weight", weight, env_steps)

    def actors(self, env_steps: int, rows: list[dict]) -> None:
        """Modes async and apex: each actor's figures over the last log window."""
        if self._actors is None:
            self._actors = _CsvTable(os.path.join(self._run_dir, ACTORS_CSV), ACTOR_COLUMNS)
        for row in rows:
            self._actors.write({ENV_STEPS: env_steps, **row})
            self._tensorboard.add_scalar(f"actors/{row['actor']}/env_steps_per_s", row["env_steps_per_s"], env_steps)

    def workers(self, env_steps: int, rows: list[dict]) -> None:
        """Mode dist, rank 0: every worker's latest post (see ``worker_board``): one row per worker in
        workers.csv, the job's sums in job.csv, and with apex actors one row per actor in job_actors.csv."""
        if self._workers is None:
            self._workers = _CsvTable(os.path.join(self._run_dir, WORKERS_CSV), WORKER_COLUMNS)
            self._job = _CsvTable(os.path.join(self._run_dir, JOB_CSV), JOB_COLUMNS)
        for row in rows:
            self._workers.write({ENV_STEPS: env_steps, "rank": row["rank"],
                                 **{f"worker/{name.split('/')[-1]}": row[name] for name in WORKER_FIGURES}})
            for name in (ENV_STEPS_PER_S, STALENESS, ROUND_TRIP_MS):
                if row[name] == row[name]:
                    self._tensorboard.add_scalar(f"workers/{row['rank']}/{name.split('/')[-1]}", row[name],
                                                 env_steps)
        job, actor_rows = job_figures(rows)
        self._job.write({ENV_STEPS: env_steps, **job})
        for name in ("env_steps_per_s", "updates_per_s"):
            self._tensorboard.add_scalar(f"job/{name}", job[name], env_steps)
        if actor_rows:
            if self._job_actors is None:
                self._job_actors = _CsvTable(os.path.join(self._run_dir, JOB_ACTORS_CSV), JOB_ACTOR_COLUMNS)
            for actor in actor_rows:
                self._job_actors.write({ENV_STEPS: env_steps, **actor})

    def close(self) -> None:
        """Close every file (a second call does nothing)."""
        for table in (self._metrics, self._episodes, self._evals, self._devices, self._members, self._actors,
                      self._workers, self._job, self._job_actors):
            if table is not None:
                table.close()
        self._tensorboard.close()


class ProgressDisplay:
    """One status line: rewritten in place on a terminal, printed every ``every`` seconds otherwise."""

    def __init__(self, enabled: bool = True, stream=None, every: float = 10.0):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interactive = enabled and self.stream.isatty()
        self.every = every
        self._last = 0.0

    def due(self) -> bool:
        """Whether ``update`` would show a new line now (so callers build the text only then)."""
        if not self.enabled:
            return False
        return time.monotonic() - self._last >= (0.2 if self.interactive else self.every)

    def update(self, text: str) -> None:
        if not self.enabled:
            return
        self._last = time.monotonic()
        if self.interactive:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line of its own (kept above the status line on a terminal)."""
        if self.interactive:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
