"""One Nature-CNN update of gluon_pdqn's learner against a bare MXNet script doing the same work, side by side.

Same network, batch (32), TD target (double or plain DQN), Huber loss, optimizer (Adam 1e-4 or centred
RMSProp 2.5e-4) and global-norm clip (10) on both sides; the bare script is ``bare_dqn.BareDQN``. Each row
interleaves the two, ``--repeats`` blocks of ``--updates`` updates each, and reports median ms per update and
the ratio ours / bare. bf16 rows run where the CPU has avx512_bf16 or AMX.

Also: where the time of one of our updates goes, each phase timed after waiting for the previous one.

    python benchmarks/cnn_update.py [--repeats 5] [--updates 30]
"""
from __future__ import annotations

import os
import statistics
import time
import warnings

import click

import gluon_pdqn

gluon_pdqn.give_mxnet_every_core()  # before MXNet loads: the Nature CNN's kernels get every core
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from bare_dqn import BareDQN
from results_file import write_results

warnings.filterwarnings("ignore")

from gluon_pdqn.config import load_preset  # noqa: E402
from gluon_pdqn.envs import EnvSpec  # noqa: E402
from gluon_pdqn.learners import SingleLearner  # noqa: E402
from gluon_pdqn.learners.single import batch_inputs  # noqa: E402
from gluon_pdqn.networks.precision import cpu_has_bf16  # noqa: E402
from gluon_pdqn.replay import Batch  # noqa: E402

PONG = EnvSpec("ALE/Pong-v5", (4, 84, 84), np.dtype(np.uint8), (84, 84), 4, 6, True)
BATCH = 32


def batches(count: int = 8) -> list[Batch]:
    rng = np.random.default_rng(0)
    frames = lambda: rng.integers(0, 256, (BATCH, 4, 84, 84), dtype=np.uint8)  # noqa: E731
    return [Batch(frames(), rng.integers(0, 6, BATCH).astype(np.int32), rng.normal(size=BATCH).astype(np.float32),
                  frames(), rng.choice([0.0, 0.99], BATCH).astype(np.float32), np.ones(BATCH, np.float32),
                  np.arange(BATCH)) for _ in range(count)]


def ours(optimizer: str, double_q: bool, precision: str) -> SingleLearner:
    learning_rate = 1e-4 if optimizer == "adam" else 2.5e-4
    cfg = load_preset("atari-modern").replace({
        "optim.name": optimizer, "optim.learning_rate": learning_rate, "optim.max_grad_norm": 10.0,
        "agent.double_q": double_q, "run.precision": precision})
    return SingleLearner(cfg, PONG, mx.cpu(0))


def ms_per_update(update, data: list[Batch], updates: int) -> float:
    for batch in data[:3]:
        update(batch)
    mx.nd.waitall()
    start = time.perf_counter()
    for i in range(updates):
        update(data[i % len(data)])
    mx.nd.waitall()
    return 1e3 * (time.perf_counter() - start) / updates


def bare_update(agent: BareDQN):
    def update(batch: Batch) -> None:
        agent.update(batch.obs, batch.actions, batch.rewards, batch.next_obs, (batch.discounts == 0).astype(np.float32))
    return update


def phases(learner: SingleLearner, data: list[Batch], repeats: int) -> dict:
    """Median ms of each phase of our update, each timed after waiting for the one before."""
    from mxnet import autograd

    samples = {"inputs": [], "td_target": [], "forward_backward": [], "grad_norm_and_scale": [], "optimizer": []}
    for i in range(repeats + 2):
        batch = data[i % len(data)]
        mx.nd.waitall()
        t0 = time.perf_counter()
        obs, next_obs, scalars = batch_inputs(batch, learner.contexts[0], BATCH)
        mx.nd.waitall()
        t1 = time.perf_counter()
        targets = learner.target_block(next_obs, scalars)
        mx.nd.waitall()
        t2 = time.perf_counter()
        with autograd.record():
            losses, _, _ = learner.loss_block(obs, scalars, targets)
        losses.backward()
        mx.nd.waitall()
        t3 = time.perf_counter()
        _, scale = learner.gradients.norm_and_scale()
        mx.nd.waitall()
        t4 = time.perf_counter()
        learner.trainers[0]._optimizer.gradient_scale = scale
        learner.trainers[0].update(1)
        mx.nd.waitall()
        t5 = time.perf_counter()
        if i >= 2:
            for name, (a, b) in zip(samples, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)]):
                samples[name].append(1e3 * (b - a))
    return {name: round(statistics.median(values), 2) for name, values in samples.items()}


@click.command()
@click.option("--repeats", default=5, show_default=True)
@click.option("--updates", default=30, show_default=True, help="Updates per timed block.")
@click.option("--output", default=os.path.join(os.path.dirname(__file__), "results", "cnn_update.json"),
              show_default=True)
def main(repeats, updates, output):
    data = batches()
    precisions = ["fp32", "bf16"] if cpu_has_bf16() else ["fp32"]
    results = {"benchmark": "cnn_update", "batch": BATCH, "repeats": repeats, "updates_per_block": updates,
               "load_average_before": os.getloadavg(), "bf16_available": cpu_has_bf16(), "rows": []}
    for precision in precisions:
        for optimizer in ("adam", "rmsprop"):
            for double_q in (True, False):
                learner = ours(optimizer, double_q, precision)
                agent = BareDQN(optimizer, double_q, 10.0, bf16=precision == "bf16")
                ours_ms, bare_ms = [], []
                for _ in range(repeats):  # interleaved, so drifting load hits both alike
                    ours_ms.append(ms_per_update(learner.step, data, updates))
                    bare_ms.append(ms_per_update(bare_update(agent), data, updates))
                row = {"precision": precision, "optimizer": optimizer, "double_q": double_q,
                       "ours_ms": round(statistics.median(ours_ms), 2), "bare_ms": round(statistics.median(bare_ms), 2),
                       "ours_samples": [round(v, 2) for v in ours_ms], "bare_samples": [round(v, 2) for v in bare_ms]}
                row["ours_vs_bare"] = round(row["ours_ms"] / row["bare_ms"], 3)
                results["rows"].append(row)
                click.echo(f"{precision} {optimizer:7s} {'double' if double_q else 'plain '}: ours {row['ours_ms']:.1f} ms, "
                           f"bare {row['bare_ms']:.1f} ms, ours/bare {row['ours_vs_bare']:.2f}")
    results["phases_ms"] = {}
    for precision in precisions:
        breakdown = phases(ours("adam", True, precision), data, repeats=10)
        results["phases_ms"][f"{precision}, adam, double DQN"] = breakdown
        click.echo(f"phases ({precision}, adam, double DQN, each after a wait): "
                   + ", ".join(f"{k} {v:.1f}" for k, v in breakdown.items()))
    write_results(results, output)


if __name__ == "__main__":
    main()
