"""The presets picked by environment id, against RL Zoo's DQN on the same environments and budgets.

Each environment and seed runs as a user would: `gluon-pdqn train --env ID --seed S` with no --preset (the id
picks it), in a fresh process, one after another. Then the run's best and last policies are each evaluated on
30 fresh greedy episodes of another seed (`gluon-pdqn evaluate --checkpoint best|last`). Reported per
environment: the preset, the median over seeds of both, the env steps and seconds, beside RL Zoo's published
score for DQN (benchmark.md of DLR-RM/rl-baselines3-zoo: the mean return of its tuned agent). Written to
benchmarks/results/env_presets.json.

    python benchmarks/env_presets.py [--envs MountainCar-v0,Acrobot-v1,CartPole-v1] [--seeds 0,1,2]
        [--set KEY=VALUE ...]   (a variation of the presets, passed on to every train command)
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

# RL Zoo's DQN (benchmark.md): mean return of the tuned agent, and the budget it trained for (env steps).
# LunarLander's is for LunarLander-v2; gymnasium 1.x has v3 (the same task, with a bug in the wind fixed).
RL_ZOO = {"MountainCar-v0": (-100.849, 120_000), "Acrobot-v1": (-76.639, 100_000), "CartPole-v1": (500.0, 50_000),
          "LunarLander-v3": (154.382, 100_000)}
# What "at least 90% of RL Zoo's score" means for each (the thresholds for negative scores).
TARGETS = {"MountainCar-v0": -120.0, "Acrobot-v1": -100.0, "CartPole-v1": 450.0, "LunarLander-v3": 139.0}


def _gluon_pdqn(*args) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "gluon_pdqn.cli", *args], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args[:3])} failed: {result.stderr.strip()[-500:]}")
    return result


def _fresh_mean(run_dir: str, which: str, seed: int) -> float:
    result = _gluon_pdqn("evaluate", run_dir, "--checkpoint", which, "--episodes", "30", "--seed", str(1000 + seed),
                         "--json")
    return statistics.mean(json.loads(result.stdout)["returns"])


@click.command()
@click.option("--envs", default="MountainCar-v0,Acrobot-v1,CartPole-v1", show_default=True)
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--set", "sets", multiple=True, help="KEY=VALUE passed on to every train command.")
@click.option("--output", default=os.path.join(os.path.dirname(__file__), "results", "env_presets.json"),
              show_default=True)
def main(envs, seeds, sets, output):
    seeds = [int(s) for s in seeds.split(",")]
    results = {"benchmark": "env_presets", "load_average_before": os.getloadavg(), "seeds": seeds, "sets": sets,
               "envs": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for env_id in envs.split(","):
            runs = []
            for seed in seeds:
                run_dir = os.path.join(scratch, f"{env_id}-{seed}")
                start = time.perf_counter()
                trained = _gluon_pdqn("train", "--env", env_id, "--seed", str(seed), "--run-dir", run_dir,
                                      *(arg for kv in sets for arg in ("--set", kv)))
                seconds = time.perf_counter() - start
                with open(os.path.join(run_dir, "summary.json")) as f:
                    summary = json.load(f)
                preset = trained.stdout.split()[1] if trained.stdout.startswith("preset ") else "?"
                run = {"seed": seed, "preset": preset, "env_steps": summary["counters"]["env_steps"],
                       "process_seconds": round(seconds, 1), "solved_at_env_steps": summary["solved_at_env_steps"],
                       "best_eval_mean_in_training": summary["best_eval_mean"],
                       "last_eval_mean_in_training": summary["last_eval_mean"],
                       "best_fresh_30": _fresh_mean(run_dir, "best", seed),
                       "last_fresh_30": _fresh_mean(run_dir, "last", seed)}
                runs.append(run)
                click.echo(f"{env_id} seed {seed}: {json.dumps(run)}")
            zoo_score, zoo_budget = RL_ZOO.get(env_id, (None, None))
            best = statistics.median(r["best_fresh_30"] for r in runs)
            results["envs"][env_id] = {
                "preset": runs[0]["preset"], "median_best_fresh_30": best,
                "median_last_fresh_30": statistics.median(r["last_fresh_30"] for r in runs),
                "median_env_steps": statistics.median(r["env_steps"] for r in runs),
                "median_process_seconds": statistics.median(r["process_seconds"] for r in runs),
                "rl_zoo_dqn": {"score": zoo_score, "budget_env_steps": zoo_budget},
                "target": TARGETS.get(env_id), "reached": None if env_id not in TARGETS else best >= TARGETS[env_id],
                "runs": runs}
            click.echo(f"{env_id}: median best {best:.1f} (fresh 30 episodes), RL Zoo {zoo_score}")
    write_results(results, output)


if __name__ == "__main__":
    main()
