"""Time to solve CartPole-v1 with a preset (the default one unless told): env steps and wall-clock seconds.

Solved means a greedy 10-episode evaluation (its time included) averaging >= 475 within the preset's budget
(50,000 env steps for cartpole). Each seed runs as `gluon-pdqn train` in a fresh process, one after another,
as a user would run it. Figures go to stdout and to benchmarks/results/cartpole_solve.json.

    python benchmarks/cartpole_solve.py [--preset cartpole] [--seeds 0,1,2] [--set key=value ...]

With ``--preset async`` or ``--preset async-a3c`` it times mode async (4 actors) the same way, written to
benchmarks/results/cartpole_solve-<preset>.json.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import click

from results_file import write_results

# Stable-Baselines3 DQN with RL Zoo's tuned CartPole hyperparameters, measured on this project's 2-core
# machine (issue 2): env steps and seconds to solve for 3 seeds, evaluation every 2,000 steps included.
PEER = {"name": "stable-baselines3 DQN (rl-zoo hyperparameters)", "env_steps": [14_000, 32_000, 34_000],
        "seconds": [16.0, 36.0, 37.0]}


@click.command()
@click.option("--preset", default="cartpole", show_default=True)
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Setting overrides for every seed.")
@click.option("--output", help="JSON file [default: benchmarks/results/cartpole_solve[-<preset>].json].")
def main(preset, seeds, sets, output):
    suffix = "" if preset == "cartpole" else f"-{preset}"
    output = output or os.path.join(os.path.dirname(__file__), "results", f"cartpole_solve{suffix}.json")
    seeds = [int(s) for s in seeds.split(",")]
    runs = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        for seed in seeds:
            run_dir = os.path.join(scratch, f"seed{seed}")
            command = [sys.executable, "-m", "gluon_pdqn.cli", "train", "--quiet", "--preset", preset, "--seed", str(seed),
                       "--run-dir", run_dir] + [a for s in sets for a in ("--set", s)]
            start = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            process_seconds = time.perf_counter() - start
            if result.returncode != 0:
                sys.exit(f"seed {seed} failed: {result.stderr.strip()}")
            with open(os.path.join(run_dir, "summary.json")) as f:
                summary = json.load(f)
            run = {"seed": seed, "solved": summary["solved_at_env_steps"] is not None,
                   "solve_env_steps": summary["solved_at_env_steps"],
                   "solve_seconds": summary["solved_at_seconds"],
                   "process_seconds": round(process_seconds, 2),  # with interpreter and MXNet start-up
                   "learner_steps": summary["counters"]["learner_steps"],
                   "best_eval_mean": summary["best_eval_mean"]}
            runs.append(run)
            click.echo(f"seed {seed}: " + (f"solved at {run['solve_env_steps']:,} env steps in "
                                           f"{run['solve_seconds']:.1f} s" if run["solved"] else
                                           f"not solved (best greedy mean {run['best_eval_mean']})")
                       + f" ({process_seconds:.1f} s with start-up)")
    solved = [r for r in runs if r["solved"]]
    # Unsolved seeds count as the whole budget, so a median never hides a failure.
    seconds = [r["solve_seconds"] if r["solved"] else float("inf") for r in runs]
    median_seconds = statistics.median(seconds)
    report = {
        "benchmark": "cartpole_solve", "preset": preset, "settings": list(sets), "runs": runs,
        "solved_seeds": len(solved), "seeds": len(runs),
        "median_solve_seconds": median_seconds if median_seconds != float("inf") else None,
        "median_solve_env_steps": statistics.median([r["solve_env_steps"] or float("inf") for r in runs]),
        "peer": {**PEER, "median_seconds": statistics.median(PEER["seconds"])},
        "load_average_before": load_before,
    }
    if report["median_solve_seconds"] is not None:
        report["speedup_vs_peer_median"] = round(report["peer"]["median_seconds"] / median_seconds, 2)
    click.echo(f"solved {len(solved)}/{len(runs)} seeds; median time to solve "
               f"{median_seconds:.1f} s (peer median {report['peer']['median_seconds']:.0f} s)")
    write_results(report, output)


if __name__ == "__main__":
    main()
