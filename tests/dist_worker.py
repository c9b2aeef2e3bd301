"""A worker of the dist_sync equivalence test: 3 x PUSH_EVERY SGD steps on its own batches, then its parameters.

Arguments: the output prefix, PUSH_EVERY, and the algorithm (agent.algo; C51 on a [-2, 2] support).

Run by tests/test_dist.py under gluon_pdqn.parallel.launcher.Job (which sets DMLC_ROLE and friends).
"""
import sys

import mxnet as mx
import numpy as np

from gluon_pdqn.config import Config
from gluon_pdqn.learners import DistLearner
from gluon_pdqn.parallel.kvstore import create_dist_kvstore
from tests_helpers import SPEC, equivalence_batch

SETTINGS = {"network.hidden": "16,16", "optim.name": "sgd", "optim.learning_rate": 0.1, "optim.max_grad_norm": 0,
            "run.mode": "dist", "run.kvstore": "dist_sync", "run.hybridize": False}


def algo_settings(algo: str) -> dict:
    return {"agent.algo": algo, "agent.v_min": -2.0, "agent.v_max": 2.0, "agent.quantiles": 8}


if __name__ == "__main__":
    out_prefix, push_every, algo = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    kvstore = create_dist_kvstore("dist_sync")  # first: joining after MXNet has run work hangs
    mx.random.seed(0)
    learner = DistLearner(Config().replace({**SETTINGS, **algo_settings(algo), "run.push_every": push_every}), SPEC, mx.cpu(), kvstore)
    for step in range(3 * push_every):
        learner.step(equivalence_batch(step, learner.rank))
    np.savez(f"{out_prefix}-{learner.rank}.npz",
             **{k: v.data().asnumpy() for k, v in learner.online._collect_params_with_prefix().items()})
