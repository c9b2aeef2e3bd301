"""What MXNet's thread default costs: our learner with OMP_NUM_THREADS at MXNet's default and at the cores.

MXNet gives its OpenMP kernels half of the CPUs unless OMP_NUM_THREADS is set (it assumes two hyperthreads a
core); gluon_pdqn sets it to the physical cores on import. Each setting runs in a fresh process (the variable
is read when MXNet's library loads), ``--repeats`` times, interleaved; medians reported. Figures: ms per
Nature-CNN update (Adam, double DQN, batch 32) in fp32 and bf16, ms per acting call (one observation), and
CartPole MLP updates per second (batch 64).

    python benchmarks/threads.py [--repeats 3]
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import click

from results_file import write_results


def measure() -> dict:
    """Run in a child process whose OMP_NUM_THREADS is already set."""
    import time
    import warnings

    warnings.filterwarnings("ignore")
    import gluon_pdqn  # noqa: F401
    import mxnet as mx
    import numpy as np

    from cnn_update import batches, ms_per_update, ours
    from gluon_pdqn.config import load_preset
    from gluon_pdqn.envs import EnvSpec
    from gluon_pdqn.learners import SingleLearner
    from gluon_pdqn.networks.precision import cpu_has_bf16
    from gluon_pdqn.replay import Batch

    data = batches()
    figures = {"cnn_update_ms_fp32": ms_per_update(ours("adam", True, "fp32").step, data, 20)}
    if cpu_has_bf16():
        figures["cnn_update_ms_bf16"] = ms_per_update(ours("adam", True, "bf16").step, data, 20)
    learner = ours("adam", True, "fp32")
    obs = data[0].obs[:1]
    for _ in range(20):
        learner.q_values(obs)
    start = time.perf_counter()
    for _ in range(200):
        learner.q_values(obs)
    figures["acting_call_ms"] = 1e3 * (time.perf_counter() - start) / 200
    spec = EnvSpec("CartPole-v1", (4,), np.dtype(np.float32), (4,), 1, 2, False)
    mlp = SingleLearner(load_preset("cartpole"), spec, mx.cpu(0))
    rng = np.random.default_rng(0)
    vectors = lambda: rng.normal(size=(64, 4)).astype(np.float32)  # noqa: E731
    batch = Batch(vectors(), rng.integers(0, 2, 64).astype(np.int32), np.ones(64, np.float32), vectors(),
                  np.full(64, 0.99, np.float32), np.ones(64, np.float32), np.arange(64))
    figures["mlp_updates_per_s"] = 1e3 / ms_per_update(mlp.step, [batch], 500)
    figures["omp_num_threads"] = os.environ["OMP_NUM_THREADS"]
    return figures


@click.command()
@click.option("--repeats", default=3, show_default=True)
@click.option("--child", is_flag=True, hidden=True)
@click.option("--output", default=os.path.join(os.path.dirname(__file__), "results", "threads.json"),
              show_default=True)
def main(repeats, child, output):
    if child:
        print(json.dumps(measure()))
        return
    import gluon_pdqn

    cores = gluon_pdqn.physical_cores()
    settings = {"mxnet_default": max(1, len(os.sched_getaffinity(0)) // 2), "physical_cores": cores}
    results = {"benchmark": "threads", "settings": settings, "repeats": repeats,
               "load_average_before": os.getloadavg(), "samples": {name: [] for name in settings}}
    for _ in range(repeats):
        for name, threads in settings.items():
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            run = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL, cwd=os.path.dirname(os.path.abspath(__file__)))
            if run.returncode != 0:
                sys.exit(f"{name} failed: {run.stderr.strip().splitlines()[-1]}")
            results["samples"][name].append(json.loads(run.stdout.strip().splitlines()[-1]))
    results["medians"] = {}
    for name, runs in results["samples"].items():
        keys = [k for k in runs[0] if k != "omp_num_threads"]
        results["medians"][name] = {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}
        click.echo(f"{name} (OMP_NUM_THREADS={settings[name]}): {results['medians'][name]}")
    write_results(results, output)


if __name__ == "__main__":
    main()
