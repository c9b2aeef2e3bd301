"""What a learner learns: the target and the loss of each algorithm, apart from how updates are placed.

``TDLearning`` is the replay learners' (``agent.algo``: dqn, c51, qr-dqn); ``AsyncQ`` and ``A3C`` are the
rollout learners' (``actors.algo``, Mnih et al. 2016). A learner puts one of them together with its networks
(``QNetworks``) and a placement.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..distributional import ReturnModel
from ..envs import EnvSpec
from ..losses import (ActorCriticLoss, DistributionalLoss, DistributionalTDTarget, DQNLoss, QRegressionLoss,
                      TDTarget)


class TDLearning:
    """One-step (or the replay's n-step) TD learning of Q-values or of a return distribution per action.

    Args:
        cfg: the run's configuration (``agent.algo``, ``agent.double_q``, ``optim.loss``, ``optim.huber_delta``).
        n_actions: the environment's actions.
    """

    def __init__(self, cfg, n_actions: int):
        self.cfg, self.n_actions = cfg, n_actions
        # What the network's outputs are: Q-values, or a return distribution per action (distributional.py).
        self.return_model = ReturnModel.of(cfg.agent)

    def graphs(self, online, target, hybridize: bool):
        """The TD-target graph (run without recording) and the loss graph (recorded) over these networks."""
        cfg, model = self.cfg, self.return_model
        if model.distributional:
            blocks = (DistributionalTDTarget(online, target, model, self.n_actions, double_q=cfg.agent.double_q),
                      DistributionalLoss(online, model, self.n_actions, huber_delta=cfg.optim.huber_delta))
        else:
            blocks = (TDTarget(online, target, double_q=cfg.agent.double_q),
                      DQNLoss(online, loss=cfg.optim.loss, huber_delta=cfg.optim.huber_delta))
        if hybridize:
            for block in blocks:
                _hybridize(block)
        return blocks

    def mixed_target_graph(self, online, hybridize: bool):
        """The TD-target graph of an ensemble member, whose target Q-values of s' come mixed from the others'."""
        block = TDTarget(online, None, double_q=self.cfg.agent.double_q)
        if hybridize:
            _hybridize(block)
        return block


def _hybridize(block) -> None:
    block.hybridize(static_alloc=True, static_shape=True)


def discounted_returns(rollout, bootstrap: float, gamma: float) -> np.ndarray:
    """The forward view: R_t = r_t + gamma r_{t+1} + ... + gamma^(T-t) V(s_T), with V(s_T) = ``bootstrap``."""
    returns = np.empty(len(rollout.rewards), dtype=np.float32)
    running = 0.0 if rollout.terminated else float(bootstrap)
    for t in range(len(rollout.rewards) - 1, -1, -1):
        running = float(rollout.rewards[t]) + gamma * running
        returns[t] = running
    return returns


class AsyncQ:
    """Asynchronous one-step or n-step Q-learning: targets from a target network refreshed by env steps.

    Args:
        cfg: the run's configuration (``actors.algo`` picks one-step or n-step targets).
        spec: the environment's spaces.
    """

    uses_target_network = True
    has_q_values = True

    def __init__(self, cfg, spec: EnvSpec):
        self.cfg, self.n_actions = cfg, spec.n_actions
        self.n_step = cfg.actors.algo == "n-step-q"

    @staticmethod
    def network_spec(spec: EnvSpec) -> EnvSpec:
        return spec

    def loss(self, online):
        return QRegressionLoss(online, loss=self.cfg.optim.loss, huber_delta=self.cfg.optim.huber_delta)

    @staticmethod
    def greedy_values(outputs: np.ndarray) -> np.ndarray:
        """Q-values: the network's outputs."""
        return outputs

    @staticmethod
    def action_values(outputs: np.ndarray) -> np.ndarray:
        """What actors choose from (epsilon-greedy): Q-values (batch, n_actions)."""
        return outputs

    def targets(self, rollouts: list, nets) -> np.ndarray:
        """Each step's target: the n-step return bootstrapped from max_a Q_target(s_T), or r + gamma max_a Q_target(s')."""
        gamma = self.cfg.agent.gamma
        if self.n_step:
            bootstraps = nets.target_outputs(np.stack([r.bootstrap_obs for r in rollouts])).max(axis=1)
            return np.concatenate([discounted_returns(r, b, gamma) for r, b in zip(rollouts, bootstraps)])
        # One step: bootstrap every transition from its successor (the last one from s_T).
        successors = np.concatenate([np.concatenate([r.obs[1:], r.bootstrap_obs[None]]) for r in rollouts])
        next_values = nets.target_outputs(successors).max(axis=1)
        not_terminal = np.concatenate([np.r_[np.ones(len(r.rewards) - 1), 0.0 if r.terminated else 1.0]
                                       for r in rollouts])
        rewards = np.concatenate([r.rewards for r in rollouts])
        return (rewards + gamma * not_terminal * next_values).astype(np.float32)


class A3C:
    """A3C: a policy and a value head on one shared torso, n-step advantages and an entropy bonus.

    The network is the configured Q-network with one more output: columns 0..n-1 are policy logits, the
    last is V(s) (two linear heads on the shared torso, computed as one layer).

    Args:
        cfg: the run's configuration (``actors.entropy_beta``, ``actors.value_coef``).
        spec: the environment's spaces.
    """

    uses_target_network = False
    has_q_values = False  # a policy and a state value: evaluation plays the policy's greedy action

    def __init__(self, cfg, spec: EnvSpec):
        self.cfg, self.n_actions = cfg, spec.n_actions

    @staticmethod
    def network_spec(spec: EnvSpec) -> EnvSpec:
        return dataclasses.replace(spec, n_actions=spec.n_actions + 1)

    def loss(self, online):
        cfg = self.cfg
        return ActorCriticLoss(online, self.n_actions, entropy_beta=cfg.actors.entropy_beta,
                               value_coef=cfg.actors.value_coef, loss=cfg.optim.loss, huber_delta=cfg.optim.huber_delta)

    def greedy_values(self, outputs: np.ndarray) -> np.ndarray:
        """Policy logits: their argmax is the greedy action, which evaluation plays."""
        return outputs[:, :self.n_actions]

    def action_values(self, outputs: np.ndarray) -> np.ndarray:
        """What actors sample from: the policy's probabilities (batch, n_actions)."""
        logits = self.greedy_values(outputs).astype(np.float64)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def targets(self, rollouts: list, nets) -> np.ndarray:
        """n-step returns bootstrapped from V(s_T) of the current parameters."""
        values = nets.outputs(np.stack([r.bootstrap_obs for r in rollouts]))[:, self.n_actions]
        return np.concatenate([discounted_returns(r, v, self.cfg.agent.gamma) for r, v in zip(rollouts, values)])
