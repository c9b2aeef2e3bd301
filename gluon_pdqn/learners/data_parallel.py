"""Data-parallel DQN: each batch split over several devices, gradients summed by the kvstore, one Trainer.

The whole difference from one device (``single.OneDevice``) is ``forward_backward`` (one shard per device) and
``reduce_gradients`` (the kvstore's allreduce); weights are divided by the global batch size, so the
summed gradient equals the single-device gradient of the whole batch.
"""
from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..config import Config
from ..envs import EnvSpec
from ..errors import UserError
from ..replay import Batch
from .optimizers import make_optimizer
from .single import OneDevice, ReplayLearner, batch_inputs



def _shard(batch: Batch, parts: int) -> list[Batch]:
    """``batch`` cut into ``parts`` contiguous shards of near-equal size (as gluon's split_and_load)."""
    bounds = np.linspace(0, len(batch.actions), parts + 1).astype(int)
    return [Batch(*(getattr(batch, f)[lo:hi] for f in Batch.__dataclass_fields__))
            for lo, hi in zip(bounds[:-1], bounds[1:])]


class DataParallel(OneDevice):
    """The placement of a learner over several devices: shards of each batch in parallel, gradients allreduced
    by the kvstore (``run.kvstore``), one update. Every device holds a full copy of both networks.

    Args:
        cfg: the run's configuration.
        contexts: the devices, at least two.
    """

    def __init__(self, cfg: Config, contexts: list[mx.Context]):
        if cfg.run.kvstore == "nccl" and not mx.runtime.Features().is_enabled("NCCL"):
            raise UserError("--kvstore nccl needs an mxnet build with NCCL (the CUDA wheels); use device or local")
        if cfg.replay.batch_size < len(contexts):
            raise UserError(f"replay.batch_size {cfg.replay.batch_size} is smaller than the {len(contexts)} devices")
        self.contexts = list(contexts)
        self.build_contexts = self.contexts

    @staticmethod
    def trainers(nets, cfg: Config) -> list:
        return [gluon.Trainer(nets.online.collect_params(), make_optimizer(cfg.optim), kvstore=cfg.run.kvstore,
                              update_on_kvstore=False)]

    def forward_backward(self, batch: Batch, target_block, loss_block, backward):
        shards = [batch_inputs(shard, ctx, len(batch.actions))
                  for shard, ctx in zip(_shard(batch, len(self.contexts)), self.contexts)]
        targets = [target_block(next_obs, scalars) for _, next_obs, scalars in shards]
        with autograd.record():
            outputs = [loss_block(obs, scalars, shard_targets)
                       for (obs, _, scalars), shard_targets in zip(shards, targets)]
        backward([losses for losses, _, _ in outputs])
        losses, q_taken, td_abs = (list(column) for column in zip(*outputs))
        return losses, q_taken, td_abs

    def reduce_gradients(self, trainers: list) -> None:
        trainers[0].allreduce_grads()


class DataParallelLearner(ReplayLearner):
    """The replay learner over several devices (``DataParallel``).

    Args:
        cfg: the run's configuration (``run.kvstore`` names the gradient aggregation).
        spec: the environment's spaces.
        contexts: the devices, at least two.
    """

    def __init__(self, cfg: Config, spec: EnvSpec, contexts: list[mx.Context]):
        super().__init__(cfg, spec, DataParallel(cfg, contexts))
