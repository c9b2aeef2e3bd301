"""Mode apex against mode single, side by side in one run: throughput with 1, 2, 4 actors, and time to solve.

Two comparisons, each with ``gluon-pdqn compare`` (runs one after another, never sharing the cores):

1. CartPole-v1, preset cartpole: single, apex@1, apex@2, apex@4 (``--seeds`` seeds each, up to 50,000 env
   steps): env steps/s, updates/s, and env steps and seconds to a greedy mean of 475.
2. ALE/Pong-v5, preset atari-cpu: single, apex@1, apex@2, apex@4 for ``--pong-seconds`` of training each
   (one seed, a 20,000-transition replay, learning from 2,000 env steps, no evaluation): env steps/s and
   updates/s. Each apex actor steps ``env.num_envs`` (8) Pong envs.

Figures go to stdout and to benchmarks/results/apex_scaling.json; the compare directories (tables, curves)
to benchmarks/results/apex_scaling/.

    python benchmarks/apex_scaling.py [--seeds 3] [--pong-seconds 180] [--skip-pong]
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import click

from results_file import write_results

MODES = "single,apex@1,apex@2,apex@4"
KEPT = ("compare.json", "results.json", "results.csv", "table.md")


def _compare(out_dir: str, *args: str) -> list[dict]:
    """Run one ``gluon-pdqn compare`` into ``out_dir``; its per-mode rows (medians over seeds)."""
    command = [sys.executable, "-m", "gluon_pdqn.cli", "compare", "--modes", MODES, "--out", out_dir, *args]
    click.echo(" ".join(command[2:]))
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL)
    with open(os.path.join(out_dir, "results.json")) as f:
        return json.load(f)["modes"]


def _keep(out_dir: str, kept_dir: str) -> None:
    """Copy the comparison's tables and plots (not its run directories) into the results."""
    os.makedirs(kept_dir, exist_ok=True)
    for name in os.listdir(out_dir):
        if name in KEPT or name.endswith(".png"):
            shutil.copy(os.path.join(out_dir, name), os.path.join(kept_dir, name))


@click.command()
@click.option("--seeds", type=int, default=3, show_default=True, help="CartPole seeds per mode.")
@click.option("--pong-seconds", type=float, default=180.0, show_default=True, help="Training seconds per Pong run.")
@click.option("--skip-pong", is_flag=True, help="Only the CartPole comparison.")
@click.option("--work-dir", default="/tmp/apex-scaling", show_default=True, help="Where the runs go.")
def main(seeds, pong_seconds, skip_pong, work_dir):
    here = os.path.dirname(os.path.abspath(__file__))
    results = {"benchmark": "apex_scaling", "load_average_before": os.getloadavg(), "modes": MODES}
    shutil.rmtree(work_dir, ignore_errors=True)
    cartpole_dir = os.path.join(work_dir, "cartpole")
    results["cartpole"] = _compare(cartpole_dir, "--env", "CartPole-v1", "--seeds", str(seeds),
                                   "--budget-steps", "50000", "--eval-every", "2000", "--threshold", "475")
    _keep(cartpole_dir, os.path.join(here, "results", "apex_scaling", "cartpole"))
    if not skip_pong:
        pong_dir = os.path.join(work_dir, "pong")
        results["pong"] = _compare(pong_dir, "--env", "ALE/Pong-v5", "--preset", "atari-cpu", "--seeds", "1",
                                   "--budget-seconds", str(pong_seconds), "--eval-every", str(10**9),
                                   "--set", "replay.capacity=20000", "--set", "replay.learning_starts=2000")
        _keep(pong_dir, os.path.join(here, "results", "apex_scaling", "pong"))
    for name in ("cartpole", "pong"):
        for row in results.get(name, []):
            click.echo(f"{name:8s} {row['mode']:8s} env steps/s {row['env_steps_per_s'] or float('nan'):8.1f}  "
                       f"updates/s {row['updates_per_s'] or float('nan'):7.1f}  solved {row['reached']}/{row['runs']}"
                       f"  s to solve {row['seconds_to_threshold']}  env steps {row['env_steps_to_threshold']}")
    write_results(results, os.path.join(here, "results", "apex_scaling.json"))


if __name__ == "__main__":
    main()
