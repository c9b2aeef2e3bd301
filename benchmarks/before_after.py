"""The CartPole loop and time to solve, this checkout against an earlier commit, side by side in one run.

For a change to the training loop: does any mode get slower or learn worse? Each round runs, for each
tree (an earlier commit checked out into a temporary git worktree, and this checkout), ``gluon-pdqn train``
with the cartpole preset (mode async: its own, async) and each seed, alternating trees so that the machine's load falls on both alike.
Reported per tree and mode: median env steps/s over the whole run (evaluations included), median seconds
and env steps to the stop return (475), and how many seeds solved. Written to
benchmarks/results/before_after.json.

    python benchmarks/before_after.py --before b91681f [--modes single,data] [--seeds 0,1,2]
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

import click

from results_file import write_results

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _train(tree: str, mode: str, seed: int, run_dir: str) -> dict:
    """One run in ``tree`` (its own gluon_pdqn is imported: the tree is the working directory)."""
    ctx = "cpu:0" if mode in ("single", "async", "apex") else "cpu:0,cpu:1"
    preset = "async" if mode == "async" else "cartpole"  # (mode async's own CartPole preset)
    command = [sys.executable, "-m", "gluon_pdqn.cli", "train", "--quiet", "--preset", preset, "--mode", mode,
               "--ctx", ctx, "--seed", str(seed), "--run-dir", run_dir]
    environment = {**os.environ, "PYTHONPATH": tree}
    result = subprocess.run(command, cwd=tree, env=environment, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        sys.exit(f"{tree} {mode} seed {seed} failed: {result.stderr.strip()[-500:]}")
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    counters = summary["counters"]
    return {"seed": seed, "env_steps_per_s": counters["env_steps"] / counters["wall_seconds"],
            "solved_at_seconds": summary["solved_at_seconds"], "solved_at_env_steps": summary["solved_at_env_steps"]}


def _medians(runs: list[dict]) -> dict:
    solved = [r for r in runs if r["solved_at_seconds"] is not None]
    # An unsolved seed counts as never solving, so a median never hides a failure.
    seconds = statistics.median(r["solved_at_seconds"] or float("inf") for r in runs)
    env_steps = statistics.median(r["solved_at_env_steps"] or float("inf") for r in runs)
    return {"env_steps_per_s": round(statistics.median(r["env_steps_per_s"] for r in runs), 1),
            "solve_seconds": None if seconds == float("inf") else round(seconds, 1),
            "solve_env_steps": None if env_steps == float("inf") else env_steps,
            "solved": f"{len(solved)}/{len(runs)}", "runs": runs}


@click.command()
@click.option("--before", required=True, help="The earlier commit (any git revision).")
@click.option("--modes", default="single,data,model,ensemble", show_default=True)
@click.option("--seeds", default="0,1,2", show_default=True)
def main(before, modes, seeds):
    load_before = os.getloadavg()
    seeds = [int(s) for s in seeds.split(",")]
    modes = [m for m in modes.split(",") if m]
    revision = subprocess.run(["git", "rev-parse", "--short", before], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    now = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as scratch:
        old_tree = os.path.join(scratch, "before")
        subprocess.run(["git", "worktree", "add", "--detach", old_tree, revision], cwd=REPO, check=True,
                       capture_output=True)
        try:
            trees = {f"before ({revision})": old_tree, f"after ({now})": REPO}
            runs = {(name, mode): [] for name in trees for mode in modes}
            for seed in seeds:
                for mode in modes:
                    for name, tree in trees.items():
                        run_dir = os.path.join(scratch, f"{len(os.listdir(scratch))}-{mode}-{seed}")
                        run = _train(tree, mode, seed, run_dir)
                        runs[(name, mode)].append(run)
                        click.echo(f"{name:18s} {mode:9s} seed {seed}: {run['env_steps_per_s']:7.0f} env steps/s, "
                                   f"solved at {run['solved_at_seconds']} s")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", old_tree], cwd=REPO, capture_output=True)
    results = {"benchmark": "before_after", "before": revision, "after": now, "seeds": seeds,
               "load_average_before": load_before,
               "modes": {mode: {name: _medians(runs[(name, mode)]) for name in trees} for mode in modes}}
    for mode, by_tree in results["modes"].items():
        click.echo(f"{mode}: " + "; ".join(f"{name} {m['env_steps_per_s']} env steps/s, solve {m['solve_seconds']} s "
                                            f"({m['solved']})" for name, m in by_tree.items()))
    write_results(results, os.path.join(HERE, "results", "before_after.json"))


if __name__ == "__main__":
    main()
