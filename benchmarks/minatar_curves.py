"""MinAtar learning curves: the `minatar` preset (the paper's DQN settings) on several games and seeds.

Each run is `gluon-pdqn train --env MinAtar/<Game>-v1 --seed S --steps N` as a user types it (the family preset
is picked by the id; ``--version v0`` gives the ids with all 6 actions, as the paper played), one MXNet thread per
run and ``--parallel`` runs at a time. Random play is measured the same way (greedy evaluation's protocol,
epsilon 1). Results: ``benchmarks/results/minatar/`` (each run's
eval.csv, metrics.csv, episodes.csv, summary.json; ``curves.png``: greedy return against env steps and
against wall-clock seconds, mean and min-max over seeds, random play dashed) and
``benchmarks/results/minatar.json``. Finished runs are kept, so the same command continues an interrupted
benchmark.

Also reported per run, as the paper reports it: the training return averaged over the last 100 episodes (from
episodes.csv), beside the paper's DQN at 1M frames (``PAPER_DQN_1M``). ``--name`` keeps a set of runs apart
(``minatar_1m`` for the paper's 1M-frame budget); ``--collect`` only gathers the runs of the set that finished
(in ``--scratch`` or already in the results), for a set whose runs take more than one session.
``--reference-runs DIR`` adds the MinAtar authors' reference DQN run by ``minatar_reference.py`` to the same
budget (``DIR/...<Game>-s<S>/``, e.g. ``results/minatar_reference``): its training curve is drawn beside ours and
its value reported beside the paper's. Runs live in ``--scratch/<Game>-s<S>`` (by default a directory of the set's own;
a run found there that was started with other settings stops the benchmark rather than count).

    python benchmarks/minatar_curves.py [--games Breakout,SpaceInvaders] [--seeds 0,1,2] [--steps 150000]
    python benchmarks/minatar_curves.py --name minatar_1m --games Breakout,Freeway,SpaceInvaders --steps 1000000
    python benchmarks/minatar_curves.py --name minatar_1m_breakout_v0 --games Breakout --version v0 --steps 1000000
    python benchmarks/minatar_curves.py --name minatar_1m_breakout_torch_init --games Breakout --steps 1000000 \\
        --set network.init=torch
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import click
import numpy as np

from results_file import write_results

COPIED = ("eval.csv", "metrics.csv", "episodes.csv", "summary.json", "config.json")

# The paper's DQN (Young & Tian 2019, with replay and target network): the training return averaged over the
# last 100 episodes at 1M frames, read from the curves of its repository (img/learning_curves.gif; 30 seeds).
PAPER_DQN_1M = {"Asterix": 9.0, "Breakout": 9.0, "Freeway": 48.0, "Seaquest": 1.0, "SpaceInvaders": 32.0}


def training_curve(run_dir: str, window: int = 100) -> dict:
    """The training return averaged over the last ``window`` episodes, after each episode (by env steps)."""
    with open(os.path.join(run_dir, "episodes.csv")) as f:
        rows = list(csv.DictReader(f))
    returns = np.array([float(r["return"]) for r in rows])
    steps = np.array([int(r["env_steps"]) for r in rows])
    if len(returns) < window:
        return {}
    averages = np.convolve(returns, np.ones(window) / window, mode="valid")
    return {"env_steps": steps[window - 1:], "mean_return": averages}


def random_play(env_id: str, episodes: int) -> dict:
    """Returns of uniformly random play under the evaluation protocol of the `minatar` preset."""
    from gluon_pdqn.config import load_preset
    from gluon_pdqn.envs import describe
    from gluon_pdqn.run.evaluation import evaluate

    cfg = load_preset("minatar").replace({"env.id": env_id})
    n_actions = describe(cfg.env).n_actions
    returns = evaluate(lambda obs: np.zeros((len(obs), n_actions)), cfg.env, n_actions, episodes, 1.0, seed=99)
    return {"mean": float(returns.mean()), "std": float(returns.std()), "episodes": episodes}


def run_command(env_id: str, seed: int, steps: int, run_dir: str, sets: tuple[str, ...],
                preset: str | None = None) -> list[str]:
    """The train command of one run, as a user types it (without ``preset``, the family preset of ``env_id``)."""
    return ([sys.executable, "-m", "gluon_pdqn.cli", "train", "--quiet", "--env", env_id, "--seed", str(seed),
             "--steps", str(steps), "--run-dir", run_dir] + (["--preset", preset] if preset else [])
            + [a for s in sets for a in ("--set", s)])


@dataclass(frozen=True)
class Job:
    """One run of a set: its name (``Breakout-s0``), its directory, the train command that starts it there, and
    what a run found in that directory must have been started with to count as this one."""
    name: str
    run_dir: str
    command: list[str]
    settings: dict  # dotted keys as ``--set`` takes them
    preset: str | None = None


def job(env_id: str, seed: int, steps: int, scratch: str, name: str, sets: tuple[str, ...] = (),
        preset: str | None = None) -> Job:
    """The job of one run, in ``scratch/<name>``."""
    run_dir = os.path.join(scratch, name)
    settings = {"env.id": env_id, "run.seed": seed, "run.total_env_steps": steps,
                **dict(s.split("=", 1) for s in sets)}
    return Job(name, run_dir, run_command(env_id, seed, steps, run_dir, sets, preset), settings, preset)


def _check_same_run(run_dir: str, job: Job) -> None:
    """Exit with a one-line error if ``run_dir`` holds a run started otherwise than ``job`` (another set's, e.g.
    another ``--version`` or ``--set`` with the same ``--scratch``): it must not be resumed or counted as this."""
    from gluon_pdqn.config import from_dict

    with open(os.path.join(run_dir, "config.json")) as f:
        cfg = from_dict(json.load(f))
    mismatched = [key for key in job.settings if cfg.replace({key: job.settings[key]}) != cfg]
    if job.preset and cfg.preset != job.preset:
        mismatched.append("preset")
    if mismatched:
        sys.exit(f"{run_dir} holds a run started otherwise than {job.name} of this set ({', '.join(mismatched)} "
                 "differ): give this set its own --scratch")


def finished_run(run_dir: str) -> bool:
    """Whether ``run_dir`` holds a run that ended by itself: an interrupted run writes its summary too (with
    ``interrupted_by``), and is resumed, not counted."""
    try:
        with open(os.path.join(run_dir, "summary.json")) as f:
            return json.load(f).get("interrupted_by") is None
    except FileNotFoundError:
        return False


def run_sets(jobs: list[Job], out_dir: str, parallel: int, collect: bool) -> dict[str, str]:
    """Run ``jobs`` ``parallel`` at a time, one MXNet thread each, and return the run directory of each that
    finished, by name.

    A run that finished in an earlier session is read from ``out_dir/<name>`` (where collecting copies it); one
    with checkpoints is resumed. With ``collect`` nothing is started or resumed."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}  # runs share the cores: one MXNet thread each
    finished: dict[str, str] = {}
    pending = list(jobs)
    running: list[tuple[subprocess.Popen, str, str]] = []
    started = time.time()
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            run_dir, kept, command = job.run_dir, os.path.join(out_dir, job.name), job.command
            if not os.path.isdir(os.path.join(run_dir, "checkpoints")) and finished_run(kept):
                run_dir = kept  # finished in an earlier session: its files are in the results
            if os.path.exists(os.path.join(run_dir, "config.json")):
                _check_same_run(run_dir, job)
            if finished_run(run_dir):
                finished[job.name] = run_dir
                continue
            if collect:
                continue
            if os.path.isdir(os.path.join(run_dir, "checkpoints")):
                command = [sys.executable, "-m", "gluon_pdqn.cli", "train", "--quiet", "--resume", run_dir]
            else:
                shutil.rmtree(run_dir, ignore_errors=True)
            running.append((subprocess.Popen(command, env=environment, stdin=subprocess.DEVNULL,
                                             stderr=subprocess.PIPE, text=True), job.name, run_dir))
        for entry in list(running):
            process, name, run_dir = entry
            if process.poll() is None:
                continue
            running.remove(entry)
            if process.returncode != 0:
                sys.exit(f"{name} failed: {process.stderr.read().strip()}")
            finished[name] = run_dir
            click.echo(f"{name}: done after {time.time() - started:.0f} s")
        time.sleep(1.0)
    return finished


def copy_run(run_dir: str, out_dir: str) -> None:
    """Copy a run's files (``COPIED``) into ``out_dir/<its name>`` unless it is already there."""
    kept = os.path.join(out_dir, os.path.basename(run_dir))
    if os.path.abspath(kept) != os.path.abspath(run_dir):
        os.makedirs(kept, exist_ok=True)
        for copied in COPIED:
            shutil.copy(os.path.join(run_dir, copied), os.path.join(kept, copied))


def run_row(run_dir: str) -> dict:
    """A finished run's figures: env steps, seconds, final and best greedy evaluation, and the paper's measure (the
    training return over the last 100 episodes)."""
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    training = training_curve(run_dir)
    return {"run": os.path.basename(run_dir), "env_steps": summary["counters"]["env_steps"],
            "seconds": round(summary["counters"]["wall_seconds"], 1),
            "final_eval_mean": summary["last_eval_mean"], "best_eval_mean": summary["best_eval_mean"],
            "training_return_last_100_episodes": round(float(training["mean_return"][-1]), 2) if training else None}


def plot(games: list[str], runs: dict, randoms: dict, path: str, references: dict, version: str = "v1") -> None:
    from gluon_pdqn.plots import evaluation_curve, plt

    fig, axes = plt.subplots(len(games), 2, figsize=(11, 3.6 * len(games)), dpi=100, squeeze=False)
    for row, game in zip(axes, games):
        curves = [evaluation_curve(d) for d in runs[game]]
        curves = [c for c in curves if c]
        for ax, x in zip(row, ("env_steps", "wall_seconds")):
            if curves:
                start, end = max(c[x][0] for c in curves), min(c[x][-1] for c in curves)
                grid = np.linspace(start, end, 60)  # from the first evaluation: nothing is drawn before it
                values = np.array([np.interp(grid, c[x], c["mean_return"]) for c in curves])
                ax.plot(grid, values.mean(axis=0), label=f"greedy evaluation, minatar preset ({len(curves)} seed"
                        f"{'s' if len(curves) != 1 else ''}: mean, min-max)")
                ax.fill_between(grid, values.min(axis=0), values.max(axis=0), alpha=0.2)
            if x == "env_steps":
                for k, run_dir in enumerate(runs[game]):
                    training = training_curve(run_dir)
                    if training:
                        ax.plot(training["env_steps"], training["mean_return"], color="tab:orange", linewidth=0.8,
                                alpha=0.7, label="training return, last 100 episodes (each seed)" if k == 0 else None)
                for k, run_dir in enumerate(references.get(game, [])):
                    training = training_curve(run_dir)
                    if training:
                        stopped = "" if os.path.exists(os.path.join(run_dir, "summary.json")) else " (stopped early)"
                        ax.plot(training["env_steps"], training["mean_return"], color="tab:green", linewidth=0.8,
                                label=f"reference DQN (PyTorch), training return, last 100 episodes{stopped}"
                                if k == 0 else None)
                if game in PAPER_DQN_1M and max(c[x][-1] for c in curves) >= 500_000:
                    ax.plot([1_000_000], [PAPER_DQN_1M[game]], marker="*", markersize=12, color="black",
                            linestyle="none", label="paper's DQN at 1M frames (training return, 30 seeds)")
            ax.axhline(randoms[game]["mean"], color="gray", linestyle="--", label="random play")
            ax.set_xlabel("env steps (= frames)" if x == "env_steps" else "wall-clock seconds of training")
            ax.set_ylabel("return")
            ax.set_title(f"MinAtar/{game}-{version}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _reference_runs(source: str | None, out_dir: str, game: str) -> list[str]:
    """The reference DQN's finished runs of ``game`` (directories named ``...<Game>-s<S>``): read in place when
    ``source`` is inside the results (``minatar_reference.py table`` keeps them there), else copied into
    ``out_dir/reference/``, where an earlier collection may have left some."""
    results = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results") + os.sep
    in_place = bool(source) and os.path.abspath(source).startswith(results)
    kept = source if in_place else os.path.join(out_dir, "reference")
    if source and not in_place and os.path.isdir(source):
        for entry in sorted(os.listdir(source)):
            if entry.startswith(f"{game}-s") and os.path.exists(os.path.join(source, entry, "summary.json")):
                os.makedirs(os.path.join(kept, entry), exist_ok=True)
                for copied in ("episodes.csv", "summary.json"):
                    shutil.copy(os.path.join(source, entry, copied), os.path.join(kept, entry, copied))
    if not kept or not os.path.isdir(kept):
        return []
    return [os.path.join(kept, e) for e in sorted(os.listdir(kept))
            if e.rpartition(f"{game}-s")[2].isdigit() and _is_reference_run(os.path.join(kept, e))]


def _is_reference_run(run_dir: str) -> bool:
    """Whether ``run_dir`` holds a run of the reference DQN (not one of ours kept beside it): a finished one says so
    in its summary.json; one stopped early has only its episodes.csv, under a name ``reference-...``."""
    try:
        with open(os.path.join(run_dir, "summary.json")) as f:
            return "reference" in json.load(f)
    except OSError:
        return (os.path.basename(run_dir).startswith("reference-")
                and os.path.exists(os.path.join(run_dir, "episodes.csv")))


def _reference_summary(run_dirs: list[str]) -> dict | None:
    """The reference DQN's training return over its last 100 episodes at the end, per finished seed and median."""
    run_dirs = [d for d in run_dirs if os.path.exists(os.path.join(d, "summary.json"))]
    if not run_dirs:
        return None
    values = []
    for run_dir in run_dirs:
        with open(os.path.join(run_dir, "summary.json")) as f:
            values.append(json.load(f)["training_return_last_100"])
    return {"runs": [os.path.basename(d) for d in run_dirs], "training_return_last_100_episodes": values,
            "median": statistics.median(values)}


@click.command()
@click.option("--games", default="Breakout,SpaceInvaders", show_default=True)
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=150_000, show_default=True, help="Env steps per run.")
@click.option("--parallel", type=click.IntRange(min=1), default=2, show_default=True, help="Runs at a time.")
@click.option("--scratch", default=None, help="Where the runs live [default: /tmp/gluon_pdqn_NAME].")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Setting overrides for every run.")
@click.option("--name", default="minatar", show_default=True, help="The set of runs: results/NAME/ and NAME.json.")
@click.option("--collect", is_flag=True, help="Start no run: gather those of the set that finished.")
@click.option("--version", type=click.Choice(["v1", "v0"]), default="v1", show_default=True,
              help="MinAtar's ids: v1 with each game's minimal action set, v0 with all 6 actions (the paper's).")
@click.option("--reference-runs", type=click.Path(file_okay=False), default=None,
              help="Runs of the reference DQN (minatar_reference.py --out DIR/<Game>-s<S>) to draw and report.")
def main(games, seeds, steps, parallel, scratch, sets, name, collect, version, reference_runs):
    games, seeds = games.split(","), [int(s) for s in seeds.split(",")]
    results_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    out_dir = os.path.join(results_dir, name)
    scratch = scratch or os.path.join(tempfile.gettempdir(), f"gluon_pdqn_{name}")
    load_before = os.getloadavg()
    jobs = [job(f"MinAtar/{g}-{version}", s, steps, scratch, f"{g}-s{s}", sets) for g in games for s in seeds]
    finished = run_sets(jobs, out_dir, parallel, collect)
    runs = {g: [finished[f"{g}-s{s}"] for s in seeds if f"{g}-s{s}" in finished] for g in games}
    games = [g for g in games if runs[g]]
    randoms = {g: random_play(f"MinAtar/{g}-{version}", 100) for g in games}
    references = {g: _reference_runs(reference_runs, out_dir, g) for g in games}
    table = {}
    for game in games:
        per_seed = []
        for run_dir in runs[game]:
            copy_run(run_dir, out_dir)
            per_seed.append(run_row(run_dir))
        finals = [r["final_eval_mean"] for r in per_seed]
        trainings = [r["training_return_last_100_episodes"] for r in per_seed
                     if r["training_return_last_100_episodes"] is not None]
        table[game] = {"random_play": randoms[game], "runs": per_seed,
                       "median_training_return_last_100_episodes": statistics.median(trainings) if trainings else None,
                       "paper_dqn_training_return_at_1M_frames": PAPER_DQN_1M.get(game),
                       "reference_dqn": _reference_summary(references[game]),
                       "median_final_eval_mean": statistics.median(finals),
                       "min_final_eval_mean": min(finals),
                       "median_final_over_random": round(statistics.median(finals)
                                                         / max(randoms[game]["mean"], 1e-9), 1),
                       "median_seconds": statistics.median(r["seconds"] for r in per_seed)}
        click.echo(f"MinAtar/{game}-{version}: final greedy return median {table[game]['median_final_eval_mean']:.2f} "
                   f"(min {table[game]['min_final_eval_mean']:.2f}) over {len(per_seed)} seeds after {steps:,} env "
                   f"steps, training return (last 100 episodes) median "
                   f"{table[game]['median_training_return_last_100_episodes']}, the paper's DQN at 1M frames "
                   f"{PAPER_DQN_1M.get(game)}; median {table[game]['median_seconds']:.0f} s; random play "
                   f"{randoms[game]['mean']:.2f}")
    plot(games, runs, randoms, os.path.join(out_dir, "curves.png"), references, version)
    write_results({"games": table, "steps_per_run": steps, "parallel_runs": parallel, "mxnet_threads_per_run": 1,
                   "settings": list(sets), "preset": "minatar", "env_version": version,
                   "load_average_before": load_before},
                  os.path.join(results_dir, f"{name}.json"))


if __name__ == "__main__":
    main()
