"""What an update costs under each algorithm: DQN, C51, QR-DQN and Rainbow's network on the Nature CNN.

One Pong-shaped double-DQN update (batch 32, Adam, global-norm clip 10) of gluon_pdqn's single learner, with
``agent.algo`` dqn, c51 (51 atoms), qr-dqn (200 quantiles) and rainbow (c51 + noisy + dueling). The algorithms
are interleaved, ``--repeats`` blocks of ``--updates`` updates each, and reported as median ms per update and
as a ratio to DQN's; bf16 rows run where the CPU has avx512_bf16 or AMX. Written to
benchmarks/results/algo_update.json.

    python benchmarks/algo_update.py [--repeats 5] [--updates 20]
"""
from __future__ import annotations

import os
import statistics
import warnings

import click

import gluon_pdqn

gluon_pdqn.give_mxnet_every_core()  # before MXNet loads: the Nature CNN's kernels get every core
import mxnet as mx  # noqa: E402

from cnn_update import PONG, batches, ms_per_update  # noqa: E402
from results_file import write_results  # noqa: E402

warnings.filterwarnings("ignore")

from gluon_pdqn.config import load_preset  # noqa: E402
from gluon_pdqn.learners import SingleLearner  # noqa: E402
from gluon_pdqn.networks.precision import cpu_has_bf16  # noqa: E402

ALGORITHMS = {
    "dqn": {},
    "c51": {"agent.algo": "c51"},
    "qr-dqn": {"agent.algo": "qr-dqn", "agent.quantiles": 200},
    "rainbow (c51, noisy, dueling)": {"agent.algo": "c51", "network.noisy": True, "network.dueling": True},
}


def learner(overrides: dict, precision: str) -> SingleLearner:
    cfg = load_preset("atari-modern").replace({"optim.learning_rate": 1e-4, "agent.double_q": True,
                                               "run.precision": precision, **overrides})
    return SingleLearner(cfg, PONG, mx.cpu(0))


@click.command()
@click.option("--repeats", default=5, show_default=True)
@click.option("--updates", default=20, show_default=True, help="Updates per timed block.")
@click.option("--output", default=os.path.join(os.path.dirname(__file__), "results", "algo_update.json"),
              show_default=True)
def main(repeats, updates, output):
    data = batches()
    precisions = ["fp32", "bf16"] if cpu_has_bf16() else ["fp32"]
    results = {"benchmark": "algo_update", "network": "nature_cnn", "batch": 32, "optimizer": "adam",
               "repeats": repeats, "updates_per_block": updates, "load_average_before": os.getloadavg(),
               "bf16_available": cpu_has_bf16(), "rows": []}
    for precision in precisions:
        learners = {name: learner(overrides, precision) for name, overrides in ALGORITHMS.items()}
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
