"""DQN on one worker of a parameter-server job (Gorila, Nair et al. 2015) over MXNet's dist kvstore.

Each worker acts, keeps its own replay and computes gradients like the single learner; it pushes them to the
kvstore servers, which hold the parameters and apply the optimizer, and pulls the new parameters back
(``run.push_every``, ``run.pull_every``). In ``dist_sync`` the servers sum one push from every worker before they
update, so every worker holds the same parameters after each step; in ``dist_async`` they apply each push as it
arrives.
"""
from __future__ import annotations

import math

import mxnet as mx

from ..config import Config
from ..envs import EnvSpec
from .base import StepResult
from .optimizers import make_optimizer
from .single import SingleLearner


class DistLearner(SingleLearner):
    """The single learner with its optimizer on the kvstore servers, and its traffic batched.

    Every update computes and clips a gradient here and adds it to a local sum; every ``run.push_every``
    updates the sum is pushed (the servers apply the optimizer to its mean), and every ``run.pull_every``
    pushes the parameters are pulled back. With both at 1 (the default) each update is one push and one
    pull. Between pulls the worker computes gradients on parameters it has not refreshed: that is what
    batching the traffic costs.

    Args:
        cfg: the run's configuration.
        spec: the environment's spaces.
        ctx: this worker's device.
        kvstore: the job's ``dist_sync`` or ``dist_async`` kvstore.
    """

    def __init__(self, cfg: Config, spec: EnvSpec, ctx: mx.Context, kvstore):
        self.contexts = [ctx]
        self.kvstore = kvstore
        self._build_networks(cfg, spec, self.contexts)
        self.loss_block = self._loss_block(self.online, self.target, hybridize=cfg.run.hybridize)
        self.trainers = []  # no local optimizer: the servers run it
        self.push_every, self.pull_every = cfg.run.push_every, cfg.run.pull_every
        optimizer = make_optimizer(cfg.optim, on_kvstore_servers=True)
        # A push carries the sum of push_every gradients; dist_sync also sums one push per worker.
        workers = kvstore.num_workers if kvstore.type == "dist_sync" else 1
        optimizer.rescale_grad = 1.0 / (self.push_every * workers)
        kvstore.set_optimizer(optimizer)
        self._keys = list(range(len(self._params)))
        self._gradient_sum = [mx.nd.zeros(p.shape, ctx=ctx) for p in self._params]
        self._summed = 0  # gradients in the sum
        self.pushes = 0
        self._joined = False

    @property
    def rank(self) -> int:
        return self.kvstore.rank

    @property
    def num_workers(self) -> int:
        return self.kvstore.num_workers

    def leave(self) -> None:
        # No worker may exit while another still pushes or pulls: that left a worker hanging here.
        self.kvstore._barrier()

    def _skips_on_device(self) -> bool:
        return False  # the servers run the optimizer; the clip and the check happen here, before the push

    def _join(self) -> None:
        """First push: rank 0's parameters (fresh, or from its checkpoint) become the servers'; all pull them."""
        weights = [p.data(self.contexts[0]) for p in self._params]
        self.kvstore.init(self._keys, weights)
        self.kvstore.pull(self._keys, out=weights)
        self._joined = True

    def _apply_update(self, losses, q_taken, td_abs) -> StepResult:
        if not self._joined:
            self._join()
        grad_norm = self._grad_norm()
        if math.isfinite(grad_norm):  # a non-finite gradient is left out of the sum
            self._clip(grad_norm)
            for total, param in zip(self._gradient_sum, self._params):
                total += param.grad(self.contexts[0])
        self._summed += 1
        if self._summed == self.push_every:
            # In dist_sync the servers wait for a push from every worker: a sum of zeros is pushed too.
            self.kvstore.push(self._keys, self._gradient_sum)
            # A fresh sum, not the old one zeroed: ps-lite may still be sending from the pushed arrays (zeroing
            # them in place lost updates in the equivalence test).
            self._gradient_sum = [mx.nd.zeros_like(total) for total in self._gradient_sum]
            self._summed = 0
            self.pushes += 1
            if self.pushes % self.pull_every == 0:
                self.kvstore.pull(self._keys, out=[p.data(self.contexts[0]) for p in self._params])
        self._count_update()
        return StepResult(grad_norm, losses, q_taken, td_abs, counted=True)
