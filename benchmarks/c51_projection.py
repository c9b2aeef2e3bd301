"""C51's projection as it is (two products with one-hot matrices) against the dense triangle it replaced, in whole
updates on MinAtar's network.

The triangle, ``sum_i p_i max(0, 1 - |b_i - j|)`` over a (batch, K, K) array, was ``DistributionalTDTarget``'s
projection until 2026-12-07; it is kept here as the "before". Four learners of the ``minatar-rainbow`` preset on
MinAtar Breakout-v0 are built in one process: C51 (no noisy nets, no dueling head) and Rainbow's network, each with
either projection. Blocks of ``--updates`` updates alternate between the two forms (the order flips every pair),
``--pairs`` pairs per network, and the ratio new/old of each pair is reported with its median and range, beside
the largest difference of the two forms' TD targets on the same batch. One MXNet thread unless the caller's
environment says otherwise. Written to benchmarks/results/c51_projection.json.

    python benchmarks/c51_projection.py [--pairs 9] [--updates 100]
"""
from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before MXNet loads: MinAtar's network trains on one thread
os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")

import click  # noqa: E402
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from algo_update import MINATAR_PIECES, minatar_batches, minatar_learner  # noqa: E402
from results_file import write_results  # noqa: E402

from gluon_pdqn.learners.single import batch_inputs  # noqa: E402
from gluon_pdqn.losses import DistributionalTDTarget  # noqa: E402

NETWORKS = {"c51": MINATAR_PIECES["c51"], "rainbow": MINATAR_PIECES["rainbow (c51, noisy, dueling)"]}


class TriangleTDTarget(DistributionalTDTarget):
    """``DistributionalTDTarget`` with the projection it had until 2026-12-07: the dense triangle."""

    @staticmethod
    def project(F, probabilities, position, k: int):
        atoms = F.reshape(F.contrib.arange_like(position, axis=1), shape=(1, 1, k))
        closeness = F.relu(1 - F.abs(F.broadcast_sub(F.expand_dims(position, axis=2), atoms)))  # (batch, K_i, K_j)
        return F.sum(F.broadcast_mul(F.expand_dims(probabilities, axis=2), closeness), axis=1)


def learner_with(form: str, overrides: dict):
    learner = minatar_learner(overrides)
    if form == "old":  # before its graph is first built
        learner.target_block.__class__ = TriangleTDTarget
    return learner


def ms_per_update(learner, data, updates: int) -> float:
    mx.nd.waitall()
    start = time.perf_counter()
    for i in range(updates):
        learner.step(data[i % len(data)])
    mx.nd.waitall()
    return 1e3 * (time.perf_counter() - start) / updates


def target_difference(old, new, batch) -> float:
    """The largest difference of the two forms' target distributions for one batch, the networks' weights and
    noise being the same."""
    for network in ("online", "target"):  # the same layers in the same order; only the names' prefixes differ
        for source, copy in zip(getattr(old, network).collect_params().values(),
                                getattr(new, network).collect_params().values()):
            copy.set_data(source.data())
    next_obs, scalars = batch_inputs(batch, mx.cpu(0), len(batch.actions))[1:3]
    return float(np.abs(old.target_block(next_obs, scalars).asnumpy()
                        - new.target_block(next_obs, scalars).asnumpy()).max())


@click.command()
@click.option("--pairs", default=9, show_default=True, help="Old/new block pairs per network.")
@click.option("--updates", default=100, show_default=True, help="Updates per timed block.")
@click.option("--output", default=os.path.join(os.path.dirname(__file__), "results", "c51_projection.json"),
              show_default=True)
def main(pairs, updates, output):
    data = minatar_batches()
    results = {"benchmark": "c51_projection", "env": "MinAtar/Breakout-v0", "preset": "minatar-rainbow",
               "pairs": pairs, "updates_per_block": updates, "omp_num_threads": os.environ["OMP_NUM_THREADS"],
               "load_average_before": os.getloadavg(), "rows": []}
    for network, overrides in NETWORKS.items():
        learners = {form: learner_with(form, overrides) for form in ("old", "new")}
        for learner in learners.values():  # builds the graphs, warms the caches
            ms_per_update(learner, data, 10)
        ratios, samples = [], {"old": [], "new": []}
        for pair in range(pairs):
            for form in ("old", "new") if pair % 2 == 0 else ("new", "old"):
                samples[form].append(ms_per_update(learners[form], data, updates))
            ratios.append(samples["new"][-1] / samples["old"][-1])
        row = {"network": network, "median_ratio_new_over_old": round(statistics.median(ratios), 3),
               "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
               "median_ms_old": round(statistics.median(samples["old"]), 2),
               "median_ms_new": round(statistics.median(samples["new"]), 2),
               "ratios": [round(r, 3) for r in ratios],
               "max_target_difference": target_difference(learners["old"], learners["new"], data[0])}
        results["rows"].append(row)
        click.echo(f"{network}: new/old {row['median_ratio_new_over_old']} (median of {pairs} pairs, "
                   f"{row['ratio_range'][0]} to {row['ratio_range'][1]}); old {row['median_ms_old']} ms, new "
                   f"{row['median_ms_new']} ms; targets differ by at most {row['max_target_difference']:.2g}")
    write_results(results, output)


if __name__ == "__main__":
    main()
