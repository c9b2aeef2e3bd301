"""Mode async: total env steps per second with 1, 2, 4 and 8 actors, as threads and as processes.

The real loop, not a random policy: every action is answered by the learner's batched inference and every
rollout is learned from (async n-step Q). CartPole-v1 with the `async` preset's MLP, and an Atari id with the
Nature CNN. Each configuration runs a fixed number of env steps; the median over repeats is reported with
the mean inference batch, updates per second and policy lag. Results go to stdout and
benchmarks/results/async_scaling.json.

    python benchmarks/async_scaling.py [--actors 1,2,4,8] [--repeats 3] [--atari-id ALE/Pong-v5]
"""
from __future__ import annotations

import csv
import os
import statistics
import tempfile
import warnings

import click

from results_file import write_results

warnings.filterwarnings("ignore")

from gluon_pdqn.run.loop import Training  # noqa: E402
from gluon_pdqn.config import load_preset  # noqa: E402


def measure(cfg) -> dict:
    """One run: env steps/s over the whole run, and the loop's figures from its last metrics row."""
    with tempfile.TemporaryDirectory() as run_dir:
        summary = Training(cfg, run_dir).run()
        with open(os.path.join(run_dir, "metrics.csv")) as f:
            rows = list(csv.DictReader(f))
    counters = summary.counters
    last = rows[-1] if rows else {}
    return {"env_steps_per_s": counters["env_steps"] / counters["wall_seconds"],
            "updates_per_s": counters["learner_steps"] / counters["wall_seconds"],
            "inference_batch": float(last.get("async/inference_batch") or "nan"),
            "policy_lag": float(last.get("async/policy_lag") or "nan")}


@click.command()
@click.option("--actors", "actor_counts", default="1,2,4,8", show_default=True)
@click.option("--backends", default="thread,process", show_default=True)
@click.option("--repeats", default=3, show_default=True)
@click.option("--cartpole-steps", default=20_000, show_default=True)
@click.option("--atari-id", default="ALE/Pong-v5", show_default=True)
@click.option("--atari-steps", default=1_500, show_default=True)
@click.option("--output", default=os.path.join(os.path.dirname(__file__), "results", "async_scaling.json"),
              show_default=True)
def main(actor_counts, backends, repeats, cartpole_steps, atari_id, atari_steps, output):
    quick = {"run.eval_every": 0, "run.checkpoint_every": 0, "run.stop_return": None}
    cases = {
        "CartPole-v1, MLP 128x128": load_preset("async").replace(
            {**quick, "run.total_env_steps": cartpole_steps, "run.log_every": cartpole_steps // 4}),
        f"{atari_id}, Nature CNN": load_preset("async").replace(
            {**quick, "env.id": atari_id, "network.name": "nature_cnn", "run.total_env_steps": atari_steps,
             "run.log_every": atari_steps // 3, "optim.learning_rate": 1e-4}),
    }
    results = {"cpu_count": os.cpu_count(), "repeats": repeats, "load_average_before": os.getloadavg(), "rows": []}
    for case, base in cases.items():
        for backend in backends.split(","):
            for count in (int(a) for a in actor_counts.split(",")):
                cfg = base.replace({"actors.count": count, "actors.backend": backend})
                runs = [measure(cfg.replace({"run.seed": seed})) for seed in range(repeats)]
                row = {"case": case, "backend": backend, "actors": count,
                       **{key: statistics.median(r[key] for r in runs) for key in runs[0]}}
                results["rows"].append(row)
                click.echo(f"{case}, {count} {backend} actors: {row['env_steps_per_s']:,.0f} env steps/s, "
                           f"{row['updates_per_s']:,.0f} updates/s, inference batch {row['inference_batch']:.2f}, "
                           f"policy lag {row['policy_lag']:.2f}")
    write_results(results, output)


if __name__ == "__main__":
    main()
