"""What an update costs under each algorithm: DQN, C51, QR-DQN and Rainbow's network on the Nature CNN, or
Rainbow's pieces one by one on MinAtar's small CNN.

``--network nature``: one Pong-shaped double-DQN update (batch 32, Adam, global-norm clip 10) of gluon_pdqn's
single learner, with ``agent.algo`` dqn, c51 (51 atoms), qr-dqn (200 quantiles) and rainbow (c51 + noisy +
dueling); bf16 rows run where the CPU has avx512_bf16 or AMX. Written to benchmarks/results/algo_update.json.

``--network minatar``: the ``minatar-rainbow`` preset's update on MinAtar Breakout-v0 (all 6 actions), with its
pieces switched off and on: dqn, c51, c51 + dueling, c51 + noisy, and Rainbow's network (c51, noisy, dueling),
fp32 only; every row keeps the preset's double DQN. One MXNet thread, as MinAtar runs train (``OMP_NUM_THREADS``
and ``MXNET_CPU_WORKER_NTHREADS`` default to 1). Written to benchmarks/results/algo_update_minatar.json.

The algorithms are interleaved, ``--repeats`` blocks of ``--updates`` updates each, and reported as median ms
per update and as a ratio to DQN's.

    python benchmarks/algo_update.py [--network nature] [--repeats 5] [--updates 20]
    python benchmarks/algo_update.py --network minatar --repeats 7 --updates 100
"""
from __future__ import annotations

import os
import statistics
import sys
import warnings

import click

import gluon_pdqn

# MinAtar's small CNN trains on one thread, as MinAtar runs do (unless the caller says otherwise); the Nature
# CNN's kernels get every core. Either must be settled before MXNet loads, so before click parses the options.
if "--network=minatar" in sys.argv or any(a == "--network" and b == "minatar" for a, b in zip(sys.argv, sys.argv[1:])):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")
else:
    gluon_pdqn.give_mxnet_every_core()
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from cnn_update import PONG, batches, ms_per_update  # noqa: E402
from results_file import write_results  # noqa: E402

warnings.filterwarnings("ignore")

from gluon_pdqn.config import load_preset  # noqa: E402
from gluon_pdqn.envs.factory import describe  # noqa: E402
from gluon_pdqn.learners import SingleLearner  # noqa: E402
from gluon_pdqn.networks.precision import cpu_has_bf16  # noqa: E402
from gluon_pdqn.replay.buffer import Batch  # noqa: E402

ALGORITHMS = {
    "dqn": {},
    "c51": {"agent.algo": "c51"},
    "qr-dqn": {"agent.algo": "qr-dqn", "agent.quantiles": 200},
    "rainbow (c51, noisy, dueling)": {"agent.algo": "c51", "network.noisy": True, "network.dueling": True},
}


# The minatar-rainbow preset with its pieces off, then on one at a time; double DQN stays on in every row, as in
# the preset (replay and n-step returns do not change an update's arithmetic; prioritized replay only its weights).
MINATAR_PIECES = {
    "dqn": {"agent.algo": "dqn", "network.noisy": False, "network.dueling": False},
    "c51": {"network.noisy": False, "network.dueling": False},
    "c51 + dueling": {"network.noisy": False},
    "c51 + noisy": {"network.dueling": False},
    "rainbow (c51, noisy, dueling)": {},
}
MINATAR_ENV = "MinAtar/Breakout-v0"


def learner(overrides: dict, precision: str) -> SingleLearner:
    cfg = load_preset("atari-modern").replace({"optim.learning_rate": 1e-4, "agent.double_q": True,
                                               "run.precision": precision, **overrides})
    return SingleLearner(cfg, PONG, mx.cpu(0))


def minatar_learner(overrides: dict):
    cfg = load_preset("minatar-rainbow").replace({"env.id": MINATAR_ENV, **overrides})
    return SingleLearner(cfg, describe(cfg.env), mx.cpu(0))


def minatar_batches(count: int = 8, size: int = 32) -> list[Batch]:
    """Batches of MinAtar-like observations (sparse 0/1 channels), prioritized-replay weights included."""
    spec = describe(load_preset("minatar-rainbow").replace({"env.id": MINATAR_ENV}).env)
    rng = np.random.default_rng(0)
    grids = lambda: (rng.random((size,) + spec.obs_shape) < 0.1).astype(spec.obs_dtype)  # noqa: E731
    return [Batch(grids(), rng.integers(0, spec.n_actions, size).astype(np.int32),
                  rng.normal(size=size).astype(np.float32), grids(),
                  rng.choice([0.0, 0.99 ** 3], size).astype(np.float32),
                  rng.uniform(0.2, 1.0, size).astype(np.float32), np.arange(size)) for _ in range(count)]


@click.command()
@click.option("--network", type=click.Choice(["nature", "minatar"]), default="nature", show_default=True)
@click.option("--repeats", default=5, show_default=True)
@click.option("--updates", default=20, show_default=True, help="Updates per timed block.")
@click.option("--output", default=None, help="[default: benchmarks/results/algo_update.json, or "
              "algo_update_minatar.json]")
def main(network, repeats, updates, output):
    minatar = network == "minatar"
    output = output or os.path.join(os.path.dirname(__file__), "results",
                                    "algo_update_minatar.json" if minatar else "algo_update.json")
    data = minatar_batches() if minatar else batches()
    precisions = ["fp32", "bf16"] if cpu_has_bf16() and not minatar else ["fp32"]
    results = {"benchmark": "algo_update", "network": "minatar_cnn" if minatar else "nature_cnn", "batch": 32,
               "optimizer": "adam", "repeats": repeats, "updates_per_block": updates,
               "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
               "mxnet_cpu_worker_nthreads": os.environ.get("MXNET_CPU_WORKER_NTHREADS"),
               "load_average_before": os.getloadavg(), "bf16_available": cpu_has_bf16(), "rows": []}
    if minatar:
        results["preset"], results["env"] = "minatar-rainbow", MINATAR_ENV
    for precision in precisions:
        learners = ({name: minatar_learner(overrides) for name, overrides in MINATAR_PIECES.items()} if minatar
                    else {name: learner(overrides, precision) for name, overrides in ALGORITHMS.items()})
        samples = {name: [] for name in learners}
        for _ in range(repeats):  # interleaved, so drifting load hits every algorithm alike
            for name, each in learners.items():
                samples[name].append(ms_per_update(each.step, data, updates))
        dqn_ms = statistics.median(samples["dqn"])
        for name, values in samples.items():
            ms = statistics.median(values)
            row = {"precision": precision, "algo": name, "ms_per_update": round(ms, 2),
                   "vs_dqn": round(ms / dqn_ms, 3), "samples": [round(v, 2) for v in values]}
            results["rows"].append(row)
            click.echo(f"{precision} {name:30s} {ms:6.1f} ms per update, {row['vs_dqn']:.2f}x DQN")
    results["load_average_after"] = os.getloadavg()
    write_results(results, output)


if __name__ == "__main__":
    main()
