"""Learners of mode ``async`` (Mnih et al. 2016): they learn from actors' rollouts instead of a replay.

A rollout is what an async actor hands in (``acting.Rollout``: ``obs``, ``actions``, ``rewards``,
``bootstrap_obs``, ``terminated``); learners read those fields and import nothing of acting. Both run on one
device in the one thread that owns MXNet. Every update consumes the rollouts that arrived
since the last one, so a rollout's actions were chosen by parameters a few updates old: ``policy lag``.
The optimizer, and with it RMSProp's statistics, is shared by all actors, as in the paper's "shared RMSProp".
"""
from __future__ import annotations

import dataclasses

import mxnet as mx
import numpy as np
from mxnet import gluon

from .. import networks
from ..config import Config
from ..envs import EnvSpec
from ..losses import ActorCriticLoss, QRegressionLoss
from .base import StepResult
from .optimizers import make_optimizer
from .single import SingleLearner


def discounted_returns(rollout, bootstrap: float, gamma: float) -> np.ndarray:
    """The forward view: R_t = r_t + gamma r_{t+1} + ... + gamma^(T-t) V(s_T), with V(s_T) = ``bootstrap``."""
    returns = np.empty(len(rollout.rewards), dtype=np.float32)
    running = 0.0 if rollout.terminated else float(bootstrap)
    for t in range(len(rollout.rewards) - 1, -1, -1):
        running = float(rollout.rewards[t]) + gamma * running
        returns[t] = running
    return returns


def _inputs(rollouts: list, targets: np.ndarray, ctx: mx.Context):
    """The loss graph's inputs: observations, actions and targets of every step, as zero-copy NDArrays.

    (``nd.array`` copies cost about 0.2 ms each here, 0.6 ms of every update; the views about 30 us.)
    """
    arrays = (np.concatenate([r.obs for r in rollouts]),
              np.concatenate([r.actions for r in rollouts]).astype(np.float32),
              np.ascontiguousarray(targets, dtype=np.float32))
    return tuple(mx.nd.from_numpy(a, zero_copy=True).as_in_context(ctx) for a in arrays)


class RolloutLearner(SingleLearner):
    """What both async learners share: one device, a loss graph over (observations, actions, targets), one
    Trainer, and one update per batch of rollouts. Subclasses give the network's outputs, the loss and the
    targets.

    Args:
        cfg: the run's configuration.
        spec: the environment's spaces.
        ctx: the device.
    """

    uses_target_network = True

    def __init__(self, cfg: Config, spec: EnvSpec, ctx: mx.Context):
        self.contexts = [ctx]
        self._build_networks(cfg, self._network_spec(spec), self.contexts, with_target=self.uses_target_network)
        self.spec = spec
        self.loss_block = self._rollout_loss(cfg)
        if cfg.run.hybridize:
            # Batches change size with the rollouts; MXNet allows that under static_shape (it re-plans), and the
            # static graph still measured faster (1.4 against 1.7 ms per update).
            self.loss_block.hybridize(static_alloc=True, static_shape=True)
        self.trainers = [gluon.Trainer(self.online.collect_params(), make_optimizer(cfg.optim),
                                       update_on_kvstore=False)]

    def _network_spec(self, spec: EnvSpec) -> EnvSpec:
        return spec

    def _rollout_loss(self, cfg: Config) -> gluon.HybridBlock:
        raise NotImplementedError

    def targets(self, rollouts: list) -> np.ndarray:
        """The regression target of every step of ``rollouts``, concatenated."""
        raise NotImplementedError

    def learn(self, rollouts: list, env_steps: int) -> StepResult:
        """One update from ``rollouts`` (their steps' gradients together, averaged).

        ``env_steps`` is the run's count with these rollouts: the target network is refreshed after the update
        whenever they crossed a multiple of ``actors.target_update_every`` (by env steps, as in Mnih et al. 2016).
        """
        inputs = _inputs(rollouts, self.targets(rollouts), self.contexts[0])
        with mx.autograd.record():
            loss, values, errors = self.loss_block(*inputs)
        loss.backward()
        result = self._apply_update([loss], [values], [errors])
        before = env_steps - sum(len(r.rewards) for r in rollouts)
        every = self.cfg.actors.target_update_every
        if env_steps // every > before // every:
            self.sync_target()
        return result

    def _count_update(self) -> None:
        self.learner_steps += 1
        self._policy_stale = True  # (the target network is refreshed by env steps, in learn)

    def step(self, batch) -> StepResult:
        raise TypeError(f"{type(self).__name__} learns from actors' rollouts (learn), not from replay batches")

    def timed_step(self, batch):
        raise TypeError(f"{type(self).__name__} learns from actors' rollouts (learn), not from replay batches")


class AsyncQLearner(RolloutLearner):
    """Asynchronous one-step or n-step Q-learning: targets from a target network refreshed by the caller.

    Args:
        cfg: the run's configuration (``actors.algo`` picks one-step or n-step targets).
        spec: the environment's spaces.
        ctx: the device.
    """

    def __init__(self, cfg: Config, spec: EnvSpec, ctx: mx.Context):
        super().__init__(cfg, spec, ctx)
        self.n_step = cfg.actors.algo == "n-step-q"
        self._target_policy = networks.NumpyMLP(self.target) if self._numpy_policy is not None else None
        self._target_stale = True

    def _rollout_loss(self, cfg: Config) -> gluon.HybridBlock:
        return QRegressionLoss(self.online, loss=cfg.optim.loss, huber_delta=cfg.optim.huber_delta)

    def action_values(self, obs: np.ndarray) -> np.ndarray:
        """What actors choose from: Q-values (batch, n_actions)."""
        return self.q_values(obs)

    def _target_q(self, obs: np.ndarray) -> np.ndarray:
        if self._target_policy is None:
            return self.target(mx.nd.array(obs, ctx=self.contexts[0], dtype=obs.dtype)).asnumpy()
        if self._target_stale:
            self._load_numpy_copy(self._target_policy)
            self._target_stale = False
        return self._target_policy(obs)

    def targets(self, rollouts: list) -> np.ndarray:
        """Each step's target: the n-step return bootstrapped from max_a Q_target(s_T), or r + gamma max_a Q_target(s')."""
        gamma = self.cfg.agent.gamma
        if self.n_step:
            bootstraps = self._target_q(np.stack([r.bootstrap_obs for r in rollouts])).max(axis=1)
            return np.concatenate([discounted_returns(r, b, gamma) for r, b in zip(rollouts, bootstraps)])
        # One step: bootstrap every transition from its successor (the last one from s_T).
        successors = np.concatenate([np.concatenate([r.obs[1:], r.bootstrap_obs[None]]) for r in rollouts])
        next_values = self._target_q(successors).max(axis=1)
        not_terminal = np.concatenate([np.r_[np.ones(len(r.rewards) - 1), 0.0 if r.terminated else 1.0]
                                       for r in rollouts])
        rewards = np.concatenate([r.rewards for r in rollouts])
        return (rewards + gamma * not_terminal * next_values).astype(np.float32)

    def sync_target(self) -> None:
        super().sync_target()
        self._target_stale = True


class A3CLearner(RolloutLearner):
    """A3C: a policy and a value head on one shared torso, n-step advantages and an entropy bonus.

    The network is the configured Q-network with one more output: columns 0..n-1 are policy logits, the
    last is V(s) (two linear heads on the shared torso, computed as one layer).

    Args:
        cfg: the run's configuration (``actors.entropy_beta``, ``actors.value_coef``).
        spec: the environment's spaces.
        ctx: the device.
    """

    uses_target_network = False

    def __init__(self, cfg: Config, spec: EnvSpec, ctx: mx.Context):
        self.n_actions = spec.n_actions
        super().__init__(cfg, spec, ctx)

    def _network_spec(self, spec: EnvSpec) -> EnvSpec:
        return dataclasses.replace(spec, n_actions=spec.n_actions + 1)

    def _rollout_loss(self, cfg: Config) -> gluon.HybridBlock:
        return ActorCriticLoss(self.online, self.n_actions, entropy_beta=cfg.actors.entropy_beta,
                               value_coef=cfg.actors.value_coef, loss=cfg.optim.loss,
                               huber_delta=cfg.optim.huber_delta)

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        raise TypeError("A3C learns a policy and a state value, not Q-values; greedy_values gives the policy's "
                        "logits")

    def greedy_values(self, obs: np.ndarray) -> np.ndarray:
        """Policy logits: their argmax is the greedy action, which evaluation plays."""
        return self._outputs(obs)[:, :self.n_actions]

    def action_values(self, obs: np.ndarray) -> np.ndarray:
        """What actors sample from: the policy's probabilities (batch, n_actions)."""
        logits = self.greedy_values(obs).astype(np.float64)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def targets(self, rollouts: list) -> np.ndarray:
        """n-step returns bootstrapped from V(s_T) of the current parameters."""
        values = self._outputs(np.stack([r.bootstrap_obs for r in rollouts]))[:, self.n_actions]
        return np.concatenate([discounted_returns(r, v, self.cfg.agent.gamma) for r, v in zip(rollouts, values)])

    def sync_target(self) -> None:
        """A3C has no target network."""
