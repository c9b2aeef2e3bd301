"""The single-device DQN learner: the baseline every parallel mode is measured against."""
from __future__ import annotations

import math
import warnings

import gluonnlp
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from .. import networks
from ..config import Config
from ..envs import EnvSpec
from ..losses import DQNLoss
from ..replay import Batch
from .base import (Learner, StepResult, copy_params, load_params, load_trainer_states, save_params,
                   save_trainer_states)
from .optimizers import make_optimizer


class SingleLearner(Learner):
    """DQN on one MXNet context: online and target networks, a fused loss graph and a Gluon Trainer.

    Args:
        cfg: the run's configuration (network, optimizer, agent sections are read).
        spec: the environment's spaces.
        ctx: the device to train on.
    """

    def __init__(self, cfg: Config, spec: EnvSpec, ctx: mx.Context):
        self.cfg, self.spec, self.ctx = cfg, spec, ctx
        self.online = networks.build(cfg.network, spec, prefix="online_")
        self.target = networks.build(cfg.network, spec, prefix="target_")
        for net in (self.online, self.target):
            net.initialize(mx.init.Xavier(rnd_type="uniform", factor_type="avg", magnitude=1.0), ctx=ctx)
        self.target.collect_params().setattr("grad_req", "null")
        self.loss_block = DQNLoss(self.online, self.target, double_q=cfg.agent.double_q, loss=cfg.optim.loss,
                                  huber_delta=cfg.optim.huber_delta)
        if cfg.run.hybridize:
            self.loss_block.hybridize(static_alloc=True, static_shape=True)
        # Deferred shapes are resolved by one forward pass before anything reads the parameters.
        dummy = mx.nd.zeros((1,) + spec.obs_shape, ctx=ctx, dtype=spec.obs_dtype)
        self.online(dummy), self.target(dummy)
        copy_params(self.online, self.target)
        self._params = [p for p in self.online.collect_params().values() if p.grad_req != "null"]
        self.trainer = gluon.Trainer(self.online.collect_params(), make_optimizer(cfg.optim),
                                     update_on_kvstore=False)
        self.learner_steps = 0
        self._numpy_policy = (networks.NumpyMLP(self.online) if isinstance(self.online, networks.MLP)
                              else None)
        self._policy_stale = True

    # --- acting -----------------------------------------------------------------------------------

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        if self._numpy_policy is not None:
            if self._policy_stale:
                flat = mx.nd.concat(*[p.data().reshape((-1,)) for p in self._numpy_policy.parameters()], dim=0)
                self._numpy_policy.load(flat.asnumpy())
                self._policy_stale = False
            return self._numpy_policy(obs)
        return self.online(mx.nd.array(obs, ctx=self.ctx, dtype=obs.dtype)).asnumpy()

    # --- learning ---------------------------------------------------------------------------------

    def _inputs(self, batch: Batch):
        scalars = np.stack([batch.actions.astype(np.float32), batch.rewards, batch.discounts,
                            batch.weights / len(batch.actions)], axis=1).astype(np.float32)
        # Zero-copy views: `nd.array` would cost one engine round trip (~140 us here) per array.
        return (mx.nd.from_numpy(np.ascontiguousarray(batch.obs), zero_copy=True).as_in_context(self.ctx),
                mx.nd.from_numpy(np.ascontiguousarray(batch.next_obs), zero_copy=True).as_in_context(self.ctx),
                mx.nd.from_numpy(scalars, zero_copy=True).as_in_context(self.ctx))

    def step(self, batch: Batch) -> StepResult:
        obs, next_obs, scalars = self._inputs(batch)
        with autograd.record():
            losses, q_taken, td_abs = self.loss_block(obs, next_obs, scalars)
        losses.backward()
        grad_norm = self._grad_norm()
        if not math.isfinite(grad_norm):
            return StepResult(True, grad_norm, [losses], [q_taken], [td_abs])
        self._clip(grad_norm)
        self.trainer.update(1)
        self.learner_steps += 1
        self._policy_stale = True
        if self.learner_steps % self.cfg.agent.target_update_every == 0:
            self.sync_target()
        return StepResult(False, grad_norm, [losses], [q_taken], [td_abs])

    def _grad_norm(self) -> float:
        """Global gradient norm: the step's one blocking read, which also tells whether it is finite."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(gluonnlp.utils.grad_global_norm(self._params).asscalar())

    def _clip(self, grad_norm: float) -> None:
        max_norm = self.cfg.optim.max_grad_norm
        if max_norm > 0 and grad_norm > max_norm:
            scale = max_norm / grad_norm
            for param in self._params:
                for grad in param.list_grad():
                    grad *= scale

    def sync_target(self) -> None:
        copy_params(self.online, self.target)

    # --- state ------------------------------------------------------------------------------------

    def save(self, directory: str) -> None:
        save_params({"online": self.online, "target": self.target}, directory)
        save_trainer_states(self.trainer, directory)

    def load(self, directory: str, with_optimizer: bool = True) -> None:
        load_params({"online": self.online, "target": self.target}, directory)
        if with_optimizer:
            load_trainer_states(self.trainer, directory)
        self._policy_stale = True
