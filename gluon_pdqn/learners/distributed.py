"""DQN on one worker of a parameter-server job (Gorila, Nair et al. 2015) over MXNet's dist kvstore.

Each worker acts, keeps its own replay and computes gradients like the single learner; it pushes them to the
kvstore servers, which hold the parameters and apply the optimizer, and pulls the new parameters back with
every update (``gluon.Trainer(update_on_kvstore=True)``). In ``dist_sync`` the servers sum one push from every
worker before they update, so every worker holds the same parameters after each step; in ``dist_async`` they
apply each push as it arrives.
"""
from __future__ import annotations

import math

import mxnet as mx
from mxnet import gluon

from ..config import Config
from ..envs import EnvSpec
from .base import StepResult
from .optimizers import make_optimizer
from .single import SingleLearner


class DistLearner(SingleLearner):
    """The single learner with its optimizer on the kvstore servers.

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
        self.trainers = [gluon.Trainer(self.online.collect_params(), make_optimizer(cfg.optim, on_kvstore_servers=True),
                                       kvstore=kvstore,
                                       update_on_kvstore=True)]
        # dist_sync sums one mean gradient per worker: dividing by the workers makes it their mean.
        self._gradient_divisor = kvstore.num_workers if kvstore.type == "dist_sync" else 1

    @property
    def rank(self) -> int:
        return self.kvstore.rank

    @property
    def num_workers(self) -> int:
        return self.kvstore.num_workers

    def _skips_on_device(self) -> bool:
        return False  # the servers run the optimizer; the clip and the check happen here, before the push

    def _apply_update(self, losses, q_taken, td_abs) -> StepResult:
        grad_norm = self._grad_norm()
        skipped = not math.isfinite(grad_norm)
        if skipped:
            # In dist_sync the servers wait for a push from every worker: push zeros rather than nothing.
            for param in self._params:
                for grad in param.list_grad():
                    grad[:] = 0
        else:
            self._clip(grad_norm)
        self.trainers[0].step(self._gradient_divisor)  # push the gradient, pull the parameters
        self._count_update()
        return StepResult(grad_norm, losses, q_taken, td_abs, counted=True)
