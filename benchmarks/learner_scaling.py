"""Learner updates per second across devices, and the training loop's env steps per second, by mode.

Nature CNN at batch 32 per device (the global batch grows with devices) and at a fixed global batch of 32,
and the cartpole MLP at batch 64; each mode times repeated blocks of updates on the same batch and reports
the median. Then the full training loop (CartPole, cartpole preset) for a fixed number of env steps.
On a machine whose "devices" are CPU contexts sharing the same cores, these figures measure the overhead
of each mode, not a speed-up. Results go to stdout and benchmarks/results/learner_scaling.json.

    python benchmarks/learner_scaling.py [--contexts cpu:0,cpu:1] [--repeats 5]
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
import warnings

import click

from results_file import write_results
import numpy as np

warnings.filterwarnings("ignore")

from gluon_pdqn.config import MODES, Config, load_preset  # noqa: E402
from gluon_pdqn.envs import EnvSpec  # noqa: E402
from gluon_pdqn.build import make_learner  # noqa: E402
from gluon_pdqn.run.loop import Training  # noqa: E402
from gluon_pdqn.parallel import parse_contexts  # noqa: E402
from gluon_pdqn.replay import Batch  # noqa: E402

CNN = EnvSpec("ALE/Pong-v5", (4, 84, 84), np.dtype(np.uint8), (84, 84), 4, 6, True)
MLP = EnvSpec("CartPole-v1", (4,), np.dtype(np.float32), (4,), 1, 2, False)
PARALLEL_MODES = [m for m in ("data", "model") if m in MODES]
MICROBATCHES = (2, 4)


def _batch(spec: EnvSpec, size: int) -> Batch:
    rng = np.random.default_rng(0)

    def obs():
        if spec.obs_dtype == np.uint8:
            return rng.integers(0, 256, (size,) + spec.obs_shape).astype(np.uint8)
        return rng.normal(size=(size,) + spec.obs_shape).astype(np.float32)

    return Batch(obs(), rng.integers(0, spec.n_actions, size).astype(np.int32), np.ones(size, np.float32), obs(),
                 np.full(size, 0.99, np.float32), np.ones(size, np.float32), np.arange(size))


def updates_per_second(mode, contexts, spec, overrides, batch_size, updates, repeats) -> float:
    cfg = Config().replace({**overrides, "run.mode": mode, "replay.batch_size": batch_size})
    learner = make_learner(cfg, spec, contexts)
    batch = _batch(spec, batch_size)
    for _ in range(3):
        learner.step(batch)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(updates):
            learner.step(batch)
        learner.q_values(batch.obs[:1])  # one read, so queued work is finished before the clock stops
        rates.append(updates / (time.perf_counter() - start))
    return statistics.median(rates)


def loop_env_steps_per_second(mode, ctx, steps, repeats) -> float:
    rates = []
    for repeat in range(repeats):
        cfg = load_preset("cartpole").replace({"run.mode": mode, "run.ctx": ctx, "run.total_env_steps": steps,
                                                "run.eval_every": 0, "run.stop_return": None,
                                                "run.checkpoint_every": 0, "run.seed": repeat})
        with tempfile.TemporaryDirectory() as run_dir:
            summary = Training(cfg, run_dir).run()
        rates.append(summary.counters["env_steps"] / summary.counters["wall_seconds"])
    return statistics.median(rates)


@click.command()
@click.option("--contexts", default="cpu:0,cpu:1", show_default=True, help="Devices of the parallel modes.")
@click.option("--repeats", default=5, show_default=True)
@click.option("--loop-steps", default=10_000, show_default=True, help="Env steps per training-loop run.")
@click.option("--output", default=os.path.join(os.path.dirname(__file__), "results", "learner_scaling.json"),
              show_default=True)
def main(contexts, repeats, loop_steps, output):
    parallel = parse_contexts(contexts)
    single = parallel[:1]
    k = len(parallel)
    cases = [
        ("nature_cnn, batch 32 per device", CNN, {"network.name": "nature_cnn"}, 32, 32 * k, 10),
        ("nature_cnn, global batch 32", CNN, {"network.name": "nature_cnn"}, 32, 32, 10),
        ("mlp 128x128, global batch 64", MLP, {"network.hidden": "128,128"}, 64, 64, 200),
    ]
    results = {"contexts": contexts, "repeats": repeats, "load_average_before": os.getloadavg(),
               "cpu_count": os.cpu_count(), "learner_updates_per_s": [], "loop_env_steps_per_s": []}
    for name, spec, overrides, single_batch, parallel_batch, updates in cases:
        row = {"case": name, "single": updates_per_second("single", single, spec, overrides, single_batch,
                                                          updates, repeats)}
        for mode in PARALLEL_MODES:
            row[mode] = updates_per_second(mode, parallel, spec, overrides, parallel_batch, updates, repeats)
            row[f"{mode}_vs_single"] = round(row[mode] / row["single"], 3)
        if "model" in PARALLEL_MODES and spec is CNN:
            for pieces in MICROBATCHES:  # does pipelining micro-batches through the stages pay?
                key = f"model_microbatches_{pieces}"
                row[key] = updates_per_second("model", parallel, spec, {**overrides, "run.microbatches": pieces},
                                              parallel_batch, updates, repeats)
                row[f"{key}_vs_single"] = round(row[key] / row["single"], 3)
        results["learner_updates_per_s"].append(row)
        modes = ["single"] + [k for k in row if k not in ("case", "single") and not k.endswith("_vs_single")]
        click.echo(f"{name}: " + ", ".join(f"{m} {row[m]:.1f} updates/s" for m in modes)
                   + "".join(f" ({m}/single {row[f'{m}_vs_single']:.2f})" for m in modes[1:]))
    row = {"case": f"CartPole training loop, {loop_steps} env steps",
           "single": loop_env_steps_per_second("single", contexts.split(",")[0], loop_steps, 3)}
    for mode in PARALLEL_MODES:
        row[mode] = loop_env_steps_per_second(mode, contexts, loop_steps, 3)
        row[f"{mode}_vs_single"] = round(row[mode] / row["single"], 3)
    results["loop_env_steps_per_s"].append(row)
    click.echo(f"{row['case']}: " + ", ".join(f"{m} {row[m]:.0f} env steps/s" for m in ["single"] + PARALLEL_MODES))
    write_results(results, output)


if __name__ == "__main__":
    main()
