"""A rank of the Horovod equivalence test: 3 Adam steps (gradients clipped) on its own batches, then its
parameters.

Arguments: the output prefix and the algorithm (agent.algo; C51 on a [-2, 2] support).

Run by tests/test_horovod.py under gluon_pdqn.parallel.launcher.HorovodJob (which sets HOROVOD_* for each rank).
"""
import sys

import mxnet as mx
import numpy as np

from gluon_pdqn.build import horovod_topology
from gluon_pdqn.config import Config
from gluon_pdqn.learners.allreduce import HorovodLearner
from tests_helpers import SPEC, equivalence_batch

# Adam with a clip norm the first updates exceed: the norm clipped must be that of the mean gradient.
SETTINGS = {"network.hidden": "16,16", "optim.name": "adam", "optim.learning_rate": 0.01, "optim.max_grad_norm": 0.05,
            "run.mode": "dist", "run.learner": "horovod", "run.kvstore": "device", "run.hybridize": False}
STEPS = 3


def algo_settings(algo: str) -> dict:
    return {"agent.algo": algo, "agent.v_min": -2.0, "agent.v_max": 2.0}


if __name__ == "__main__":
    out_prefix, algo = sys.argv[1], sys.argv[2]
    topology = horovod_topology()  # first, as the builder joins a job before any MXNet work
    mx.random.seed(topology.rank)  # different initial parameters: rank 0's must be broadcast to the other
    learner = HorovodLearner(Config().replace({**SETTINGS, **algo_settings(algo)}), SPEC, mx.cpu())
    norms = [learner.step(equivalence_batch(step, topology.rank)).grad_norm for step in range(STEPS)]
    np.savez(f"{out_prefix}-{topology.rank}.npz", norms=np.array(norms),
             **{k: v.data().asnumpy() for k, v in learner.online._collect_params_with_prefix().items()})
    learner.placement.agree_to_stop(False, STEPS, budget_spent=True)  # Horovod ends as at a training rank's end
