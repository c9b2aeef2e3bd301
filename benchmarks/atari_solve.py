"""A long Atari run (Pong by default) against the wall clock: how long until greedy evaluation reaches a score.

Runs ``gluon-pdqn train --preset atari-cpu`` (or ``--preset``) with a budget of ``--hours`` of training time
(evaluations and checkpoints included) in ``--run-dir``. Run the same command again after an interruption
and it resumes from the run's newest checkpoint. When the run ends, its ``metrics.csv``, ``eval.csv``,
``episodes.csv``, ``config.json``, ``summary.json`` and learning curve are copied to
``benchmarks/results/<name>/``, and ``benchmarks/results/<name>.json`` gets the figures: the first
evaluation at or above ``--target`` (env steps, hours), the best and last evaluations, env steps/s and
updates/s, and the machine's load. Then the run's best and last policies are evaluated afresh
(``gluon-pdqn evaluate``, ``--final-episodes`` each, seeds apart from training's) at the run's own protocol
(for Atari ids the Nature protocol: epsilon 0.05, up to 30 no-ops) and at Dopamine's evaluation epsilon of
0.001, so the figure compares with both kinds of published number. A run takes hours: start it in the background,

    nohup python benchmarks/atari_solve.py --run-dir /root/pong-solve > pong-solve.log 2>&1 &
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import click

from results_file import write_results

COPIED = ("metrics.csv", "eval.csv", "episodes.csv", "config.json", "summary.json", "learning_curve.png")


def _rows(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


DOPAMINE_EVAL_EPSILON = 0.001  # Dopamine's DQN and Rainbow evaluate with this epsilon (the Nature protocol: 0.05)


def _final_evaluations(run_dir: str, episodes: int) -> dict:
    """The best and last policies of ``run_dir``, each played ``episodes`` fresh episodes at the run's protocol
    epsilon and at Dopamine's, by ``gluon-pdqn evaluate`` (its JSON, less the list of returns).

    The four evaluations run side by side, one MXNet thread each: each plays a single env, batch 1, which keeps
    about one core busy, so run in turn they would leave the other cores idle for as long again.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MXNET_CPU_WORKER_NTHREADS": "1"}
    running = {}
    for which in ("best", "last"):
        for label, epsilon in (("protocol", None), ("dopamine_epsilon", DOPAMINE_EVAL_EPSILON)):
            command = [sys.executable, "-m", "gluon_pdqn.cli", "evaluate", run_dir, "--checkpoint", which,
                       "--episodes", str(episodes), "--json"] + ([] if epsilon is None else ["--epsilon", str(epsilon)])
            running[f"{which}_{label}"] = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                           text=True, stdin=subprocess.DEVNULL, env=env)
    results = {}
    for key, process in running.items():
        out, err = process.communicate()
        if process.returncode != 0:
            results[key] = {"error": err.strip().splitlines()[-1:]}
            continue
        result = json.loads(out)
        results[key] = {k: result[k] for k in ("protocol", "epsilon", "episodes", "mean", "median", "min", "max",
                                               "std")}
    return results


def _figures(run_dir: str, target: float) -> dict:
    """The run's evaluations and throughput, read from its files."""
    evals = _rows(os.path.join(run_dir, "eval.csv"))
    metrics = _rows(os.path.join(run_dir, "metrics.csv"))
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    reached = next((r for r in evals if float(r["mean_return"]) >= target), None)
    best = max(evals, key=lambda r: float(r["mean_return"])) if evals else None
    last_metrics = metrics[-1] if metrics else {}
    seconds = float(summary["counters"]["wall_seconds"])

    def evaluation(row):
        return None if row is None else {
            "env_steps": int(row["env_steps"]), "hours": round(float(row["wall_seconds"]) / 3600, 3),
            "mean_return": float(row["mean_return"]), "min_return": float(row["min_return"]),
            "max_return": float(row["max_return"]), "episodes": int(row["episodes"]), "protocol": row["protocol"]}

    return {
        "target_return": target,
        "reached_target": evaluation(reached),
        "best_evaluation": evaluation(best),
        "last_evaluation": evaluation(evals[-1] if evals else None),
        "evaluations": [evaluation(r) for r in evals],
        "eval_protocol": summary.get("eval_protocol"),
        "hours": round(seconds / 3600, 3),
        "env_steps": summary["counters"]["env_steps"],
        "learner_steps": summary["counters"]["learner_steps"],
        "env_steps_per_s_overall": round(summary["counters"]["env_steps"] / max(seconds, 1e-9), 1),
        "updates_per_s_overall": round(summary["counters"]["learner_steps"] / max(seconds, 1e-9), 2),
        "loop_ms_per_env_step_last_window": {k: round(float(v), 3) for k, v in last_metrics.items()
                                             if k.startswith("loop/") and v not in ("", None)},
    }


@click.command()
@click.option("--preset", default="atari-cpu", show_default=True)
@click.option("--env", "env_id", default="ALE/Pong-v5", show_default=True)
@click.option("--hours", type=float, default=2.0, show_default=True, help="Training time budget, over all sessions.")
@click.option("--target", type=float, default=18.0, show_default=True, help="Greedy mean return to reach.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--run-dir", required=True, help="The run directory (resumed if it holds a checkpoint).")
@click.option("--name", default="pong_solve", show_default=True, help="Name of the results in benchmarks/results.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Setting overrides.")
@click.option("--final-episodes", type=click.IntRange(min=0), default=30, show_default=True,
              help="Fresh episodes for each final evaluation (0: none).")
def main(preset, env_id, hours, target, seed, run_dir, name, sets, final_episodes):
    results_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    load_before = os.getloadavg()
    overrides = [a for s in (f"run.max_seconds={hours * 3600}", *sets) for a in ("--set", s)]
    checkpoints = os.path.join(run_dir, "checkpoints")
    if os.path.isdir(checkpoints) and any(n.startswith("ckpt-") for n in os.listdir(checkpoints)):
        command = ["train", "--resume", run_dir, *overrides]
    else:
        command = ["train", "--preset", preset, "--env", env_id, "--seed", str(seed), "--run-dir", run_dir,
                   *overrides]
    started = time.time()
    run = subprocess.Popen([sys.executable, "-m", "gluon_pdqn.cli", *command], stdin=subprocess.DEVNULL)
    # Ctrl-C or SIGTERM here is passed on, and the run is waited for while it writes its checkpoint (killing it
    # then, as subprocess.run does on an interrupt, would lose the checkpoint).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda received, _frame: run.send_signal(received))
    if run.wait() != 0:
        sys.exit(f"the run stopped with exit code {run.returncode}; run this command again to resume it")
    os.makedirs(os.path.join(results_dir, name), exist_ok=True)
    for file in COPIED:
        if os.path.exists(os.path.join(run_dir, file)):
            shutil.copy(os.path.join(run_dir, file), os.path.join(results_dir, name, file))
    figures = _figures(run_dir, target)
    figures.update({"preset": preset, "env": env_id, "seed": seed, "budget_hours": hours,
                    "command": "gluon-pdqn " + " ".join(command), "load_average_before_last_session": load_before,
                    "last_session_seconds": round(time.time() - started, 1)})
    if final_episodes:
        figures["final_evaluations"] = _final_evaluations(run_dir, final_episodes)
    write_results(figures, os.path.join(results_dir, f"{name}.json"))
    reached = figures["reached_target"]
    click.echo(f"{env_id}: " + (f"greedy mean {reached['mean_return']:.1f} >= {target:g} at {reached['env_steps']:,} "
                                f"env steps, {reached['hours']:.2f} h" if reached else
                                f"did not reach {target:g} in {figures['hours']:.2f} h; best "
                                f"{(figures['best_evaluation'] or {}).get('mean_return')}"))
    for label, result in figures.get("final_evaluations", {}).items():
        click.echo(f"{label}: " + (f"mean {result['mean']:.1f} over {result['episodes']} episodes, epsilon "
                                   f"{result['epsilon']:g}" if "mean" in result else f"failed: {result['error']}"))


if __name__ == "__main__":
    main()
