"""Learners of mode ``async`` (Mnih et al. 2016): they learn from actors' rollouts instead of a replay.

A rollout is what an async actor hands in (``acting.Rollout``: ``obs``, ``actions``, ``rewards``,
``bootstrap_obs``, ``terminated``); learners read those fields and import nothing of acting. Both run on one
device in the one thread that owns MXNet. Every update consumes the rollouts that arrived
since the last one, so a rollout's actions were chosen by parameters a few updates old: ``policy lag``.
The optimizer, and with it RMSProp's statistics, is shared by all actors, as in the paper's "shared RMSProp".
"""
from __future__ import annotations

import mxnet as mx
import numpy as np

from ..config import Config
from ..envs import EnvSpec
from .algorithms import A3C, AsyncQ, discounted_returns
from .base import Learner, StepResult, load_params, load_trainer_states, save_params, save_trainer_states
from .qnets import QNetworks
from .single import Gradients, OneDevice, apply_update_rule

__all__ = ["A3CLearner", "AsyncQLearner", "RolloutLearner", "discounted_returns"]


def _inputs(rollouts: list, targets: np.ndarray, ctx: mx.Context):
    """The loss graph's inputs: observations, actions and targets of every step, as zero-copy NDArrays.

    (``nd.array`` copies cost about 0.2 ms each here, 0.6 ms of every update; the views about 30 us.)
    """
    arrays = (np.concatenate([r.obs for r in rollouts]),
              np.concatenate([r.actions for r in rollouts]).astype(np.float32),
              np.ascontiguousarray(targets, dtype=np.float32))
    return tuple(mx.nd.from_numpy(a, zero_copy=True).as_in_context(ctx) for a in arrays)


class RolloutLearner(Learner):
    """A rollout algorithm (``AsyncQ``, ``A3C``) on one device: its networks, its loss graph over
    (observations, actions, targets), one Trainer, and one update per batch of rollouts (``learn``).

    Args:
        cfg: the run's configuration.
        spec: the environment's spaces.
        ctx: the device.
        algorithm: what is learned.
    """

    def __init__(self, cfg: Config, spec: EnvSpec, ctx: mx.Context, algorithm):
        self.cfg, self.spec, self.algorithm = cfg, spec, algorithm
        self.contexts = [ctx]
        self.nets = QNetworks(cfg, algorithm.network_spec(spec), self.contexts,
                              with_target=algorithm.uses_target_network)
        self.loss_block = algorithm.loss(self.nets.online)
        if cfg.run.hybridize:
            # Batches change size with the rollouts; MXNet allows that under static_shape (it re-plans), and the
            # static graph still measured faster (1.4 against 1.7 ms per update).
            self.loss_block.hybridize(static_alloc=True, static_shape=True)
        self.gradients = Gradients(self.nets.params, OneDevice.trainers(self.nets, cfg), ctx, cfg.optim.max_grad_norm)
        self.learner_steps = 0

    @property
    def online(self):
        return self.nets.online

    @property
    def target(self):
        return self.nets.target

    @property
    def trainers(self) -> list:
        return self.gradients.trainers

    # --- acting -----------------------------------------------------------------------------------

    def greedy_values(self, obs: np.ndarray) -> np.ndarray:
        """What evaluation maximizes: Q-values (async Q) or the policy's logits (A3C)."""
        return self.algorithm.greedy_values(self.nets.outputs(obs))

    def action_values(self, obs: np.ndarray) -> np.ndarray:
        """What actors choose from: Q-values (epsilon-greedy) or the policy's probabilities (sampled)."""
        return self.algorithm.action_values(self.nets.outputs(obs))

    def targets(self, rollouts: list) -> np.ndarray:
        """The regression target of every step of ``rollouts``, concatenated."""
        return self.algorithm.targets(rollouts, self.nets)

    # --- learning ---------------------------------------------------------------------------------

    def learn(self, rollouts: list, env_steps: int) -> StepResult:
        """One update from ``rollouts`` (their steps' gradients together, averaged).

        ``env_steps`` is the run's count with these rollouts: the target network is refreshed after the update
        whenever they crossed a multiple of ``actors.target_update_env_steps`` (as in Mnih et al. 2016).
        """
        inputs = _inputs(rollouts, self.targets(rollouts), self.contexts[0])
        with mx.autograd.record():
            loss, values, errors = self.loss_block(*inputs)
        loss.backward()
        result = apply_update_rule([self.gradients], self._count_update, [loss], [values], [errors])
        before = env_steps - sum(len(r.rewards) for r in rollouts)
        every = self.cfg.actors.target_update_env_steps
        if env_steps // every > before // every:
            self.sync_target()
        return result

    def _count_update(self) -> None:
        self.learner_steps += 1
        self.nets.updated()  # (the target network is refreshed by env steps, in learn)

    def sync_target(self) -> None:
        if self.nets.target is not None:  # (A3C has no target network)
            self.nets.sync_target()

    # --- state ------------------------------------------------------------------------------------

    def save(self, directory: str) -> None:
        save_params(self.nets.blocks(), directory)
        save_trainer_states(self.trainers[0], directory, "optimizer")
        self.nets.save_noise(directory)

    def load(self, directory: str, with_optimizer: bool = True) -> None:
        load_params(self.nets.blocks(), directory)
        if with_optimizer:
            load_trainer_states(self.trainers[0], directory, "optimizer")
        self.nets.loaded(directory)


class AsyncQLearner(RolloutLearner):
    """Asynchronous one-step or n-step Q-learning (``AsyncQ``) on one device."""

    def __init__(self, cfg: Config, spec: EnvSpec, ctx: mx.Context):
        super().__init__(cfg, spec, ctx, AsyncQ(cfg, spec))

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q-values (batch, n_actions) of the online network."""
        return self.nets.outputs(obs)


class A3CLearner(RolloutLearner):
    """A3C (``A3C``) on one device: it learns a policy and a state value, so it has no ``q_values``."""

    def __init__(self, cfg: Config, spec: EnvSpec, ctx: mx.Context):
        super().__init__(cfg, spec, ctx, A3C(cfg, spec))
