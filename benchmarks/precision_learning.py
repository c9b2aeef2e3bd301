"""Does bf16 hurt learning? The same short pixel run in fp32 and in bf16, same seeds, side by side.

The environment is a user's own image environment (tests/toy_envs.py, PixelChoiceLarge-v0: 40x40x3 uint8
frames, so ``network.name=auto`` picks the Nature CNN): each step shows a red or green patch somewhere on
black, and the reward is +1 for naming the colour, -1 otherwise, 20 steps an episode (random play: 0, best:
20). Settings are the default preset's (cartpole) with the environment and budget changed. Per precision
and seed: the greedy evaluations (10 episodes every 2,000 env steps), the wall-clock seconds, and the ms per
update the run logged. Needs a CPU with avx512_bf16 or AMX.

    python benchmarks/precision_learning.py [--seeds 0,1,2] [--steps 8000]
"""
from __future__ import annotations

import csv
import os
import statistics
import sys
import tempfile
import warnings

import click

from results_file import write_results

warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import gluon_pdqn  # noqa: E402

gluon_pdqn.give_mxnet_every_core()  # before MXNet loads, as the command line does for a CNN

import toy_envs  # noqa: E402,F401  (registers the environment)
from gluon_pdqn.config import load_preset  # noqa: E402
from gluon_pdqn.run.loop import Training  # noqa: E402
from gluon_pdqn.networks.precision import cpu_has_bf16  # noqa: E402

ENV_ID = "PixelChoiceLarge-v0"


def run(precision: str, seed: int, steps: int) -> dict:
    cfg = load_preset("cartpole").replace({"env.id": ENV_ID, "run.total_env_steps": steps, "run.seed": seed,
                                           "run.stop_return": None, "run.precision": precision,
                                           "run.checkpoint_every": 0})
    with tempfile.TemporaryDirectory() as run_dir:
        summary = Training(cfg, run_dir).run()
        with open(os.path.join(run_dir, "eval.csv")) as f:
            evaluations = [(int(r["env_steps"]), float(r["mean_return"])) for r in csv.DictReader(f)]
    counters = summary.counters
    return {"precision": precision, "seed": seed, "evaluations": evaluations,
            "best_eval_mean": summary.best_eval_mean, "last_eval_mean": summary.last_eval_mean,
            "wall_seconds": round(counters["wall_seconds"], 1), "learner_steps": counters["learner_steps"]}


@click.command()
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--steps", default=8_000, show_default=True)
@click.option("--output", default=os.path.join(os.path.dirname(__file__), "results", "precision_learning.json"),
              show_default=True)
def main(seeds, steps, output):
    if not cpu_has_bf16():
        sys.exit("this CPU has neither avx512_bf16 nor AMX: bf16 cannot run here")
    results = {"benchmark": "precision_learning", "env": ENV_ID, "steps": steps, "preset": "cartpole",
               "load_average_before": os.getloadavg(), "runs": []}
    for seed in (int(s) for s in seeds.split(",")):
        for precision in ("fp32", "bf16"):  # interleaved, so drifting load hits both alike
            result = run(precision, seed, steps)
            results["runs"].append(result)
            click.echo(f"seed {seed} {precision}: evaluations {result['evaluations']}, "
                       f"{result['wall_seconds']} s for {result['learner_steps']} updates")
    for precision in ("fp32", "bf16"):
        runs = [r for r in results["runs"] if r["precision"] == precision]
        results[precision] = {"median_best_eval": statistics.median(r["best_eval_mean"] for r in runs),
                              "median_last_eval": statistics.median(r["last_eval_mean"] for r in runs),
                              "median_wall_seconds": statistics.median(r["wall_seconds"] for r in runs)}
        click.echo(f"{precision}: {results[precision]}")
    write_results(results, output)


if __name__ == "__main__":
    main()
