"""A user's own 84x84 image environment with default settings: the image preset against the CartPole preset it
got before, side by side in one run.

Both train `toy_envs:PixelChoice84-v0` (tests/toy_envs.py: a red or green patch on 84x84 black frames; action 0
is right for red; 20 steps an episode, random play about 0, the best 20) for the same env steps, alternating
presets in each round. Reported per preset: env steps/s over the whole run (evaluations included), the greedy
10-episode mean at the end, and the ratio of rates per round. Written to benchmarks/results/image_preset.json.

    python benchmarks/image_preset.py [--steps 4000] [--rounds 2]
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
TESTS = os.path.join(os.path.dirname(HERE), "tests")


def _run(preset: str, steps: int, run_dir: str) -> dict:
    command = [sys.executable, "-m", "gluon_pdqn.cli", "train", "--quiet", "--env", "toy_envs:PixelChoice84-v0",
               "--preset", preset, "--steps", str(steps), "--run-dir", run_dir, "--set", "run.eval_every=2000",
               "--set", "run.stop_return=1000"]
    environment = {**os.environ, "PYTHONPATH": TESTS + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run(command, env=environment, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        sys.exit(f"{preset} failed: {result.stderr.strip()[-500:]}")
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    counters = summary["counters"]
    return {"env_steps_per_s": counters["env_steps"] / counters["wall_seconds"],
            "last_eval_mean": summary["last_eval_mean"], "learner_steps": counters["learner_steps"]}


@click.command()
@click.option("--steps", default=4000, show_default=True)
@click.option("--rounds", default=2, show_default=True)
def main(steps, rounds):
    results = {"benchmark": "image_preset", "env": "toy_envs:PixelChoice84-v0", "steps": steps,
               "load_average_before": os.getloadavg(), "rounds": []}
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(rounds):
            row = {preset: _run(preset, steps, os.path.join(scratch, f"{preset}-{index}"))
                   for preset in ("cartpole", "image")}
            row["image_over_cartpole"] = row["image"]["env_steps_per_s"] / row["cartpole"]["env_steps_per_s"]
            results["rounds"].append(row)
            click.echo(json.dumps(row))
    results["median_image_over_cartpole"] = statistics.median(r["image_over_cartpole"] for r in results["rounds"])
    click.echo(f"image preset / cartpole preset env steps/s: {results['median_image_over_cartpole']:.2f}")
    write_results(results, os.path.join(HERE, "results", "image_preset.json"))


if __name__ == "__main__":
    main()
