"""An ensemble of K Q-networks, one per device, trained together on one shared replay (seed 001).

Member k bootstraps from a softmax-weighted average of the *other* members' target Q-values:

    y_k = r + discount * sum_{j != k} w_kj * Q_target_j(s', a*_k),   a*_k = argmax_a Q_online_k(s', a)
    w_kj = softmax_j(R_j / temperature) over j != k

where R_j is member j's mean return in the latest greedy evaluation (equal weights before the first one).
Acting uses the members' mean Q-values, or one member per episode (``run.ensemble_acting``).
"""
from __future__ import annotations

import contextlib
import json
import os
import time

import mxnet as mx
import numpy as np
from mxnet import autograd

from ..config import Config
from ..envs import EnvSpec
from ..errors import UserError
from ..replay import Batch
from .base import Learner, StepResult, device_figures
from .single import SingleLearner, apply_update_rule, batch_inputs


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


def mixing_weights(returns: np.ndarray, temperature: float) -> np.ndarray:
    """(K, K) matrix: row k holds member k's weights over the others (softmax of returns; 0 on the diagonal)."""
    k = len(returns)
    logits = np.asarray(returns, dtype=np.float64) / temperature
    weights = np.zeros((k, k))
    for row in range(k):
        others = [j for j in range(k) if j != row]
        weights[row, others] = softmax(logits[others])
    return weights


class EnsembleLearner(Learner):
    """K DQN members, member k on ``contexts[k]``, each with its own Trainer; one step updates all of them.

    Args:
        cfg: the run's configuration (``run.ensemble_temperature``, ``run.ensemble_acting``).
        spec: the environment's spaces.
        contexts: one device per member, at least two.
    """

    def __init__(self, cfg: Config, spec: EnvSpec, contexts: list[mx.Context]):
        self.cfg, self.spec, self.contexts = cfg, spec, list(contexts)
        # A device may hold several members; noisy members draw noise of their own.
        self.members = [SingleLearner(cfg, spec, ctx, noise_seed=[cfg.run.seed + 11, k])
                        for k, ctx in enumerate(self.contexts)]
        # A member's target Q-values of s' come mixed from the others' targets.
        self.mixed_targets = [member.algorithm.mixed_target_graph(member.online, cfg.run.hybridize)
                              for member in self.members]
        self.member_returns = np.zeros(len(self.members))
        self.weights = mixing_weights(self.member_returns, cfg.run.ensemble_temperature)
        self._weights_on_device = self._device_weights()
        self.learner_steps = 0
        self.rng = np.random.default_rng(cfg.run.seed + 7)
        self.acting_member = np.zeros(cfg.env.num_envs, dtype=np.int64)

    # --- acting -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def without_noise(self):
        with contextlib.ExitStack() as stack:
            for member in self.members:
                stack.enter_context(member.without_noise())
            yield

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        values = np.stack([member.q_values(obs) for member in self.members])  # (K, batch, actions)
        if self.cfg.run.ensemble_acting == "member" and len(obs) == len(self.acting_member):
            return values[self.acting_member, np.arange(len(obs))]
        return values.mean(axis=0)

    @property
    def ensemble(self):
        """Its members are evaluated one by one, and act one per episode (``run.ensemble_acting=member``)."""
        return self

    def episode_started(self, env_index: int) -> None:
        """Pick the member that acts in env ``env_index`` for the episode now starting."""
        self.acting_member[env_index] = self.rng.integers(len(self.members))

    def member_q_functions(self) -> list:
        """Each member's greedy Q-function (numpy in, numpy out), for evaluating the members one by one."""
        return [member.q_values for member in self.members]

    def set_member_returns(self, returns) -> list:
        """Members' latest greedy mean returns set the mixing weights of the targets.

        Returns each member's softmax weight over all members (what the others' rows renormalize).
        """
        self.member_returns = np.asarray(returns, dtype=np.float64)
        self.weights = mixing_weights(self.member_returns, self.cfg.run.ensemble_temperature)
        self._weights_on_device = self._device_weights()
        return softmax(self.member_returns / self.cfg.run.ensemble_temperature).tolist()

    def _device_weights(self):
        return [[mx.nd.array([w], ctx=ctx) for w in row] for row, ctx in zip(self.weights, self.contexts)]

    # --- learning ---------------------------------------------------------------------------------

    def _forward_backward(self, batch: Batch):
        size = len(batch.actions)
        inputs = [batch_inputs(batch, ctx, size) for ctx in self.contexts]
        next_q_targets = [member.target(next_obs) for member, (_, next_obs, _) in zip(self.members, inputs)]
        mixed = []
        for k, ctx in enumerate(self.contexts):
            terms = [next_q_targets[j].as_in_context(ctx) * self._weights_on_device[k][j]
                     for j in range(len(self.members)) if j != k]
            mixed.append(mx.nd.add_n(*terms) if len(terms) > 1 else terms[0])
        targets = [target_graph(next_obs, scalars, next_q_target)
                   for target_graph, (_, next_obs, scalars), next_q_target in zip(self.mixed_targets, inputs, mixed)]
        with autograd.record():
            outputs = [member.loss_block(obs, scalars, member_targets)
                       for member, (obs, _, scalars), member_targets in zip(self.members, inputs, targets)]
        autograd.backward([losses for losses, _, _ in outputs])
        return outputs

    def step(self, batch: Batch) -> StepResult:
        for member in self.members:
            member.nets.resample_for_update()
        outputs = self._forward_backward(batch)
        return self._apply_update(outputs)

    def timed_step(self, batch: Batch):
        start = time.perf_counter()
        for member in self.members:
            member.nets.resample_for_update()
        outputs = self._forward_backward(batch)
        ready = []
        for member in self.members:
            for param in member.nets.params:
                param.grad().wait_to_read()
            ready.append(time.perf_counter() - start)
        update_start = time.perf_counter()
        result = self._apply_update(outputs)
        mx.nd.waitall()
        end = time.perf_counter()
        return result, device_figures(self.contexts, ready, 0.0, end - update_start, end - start)

    def _apply_update(self, outputs) -> StepResult:
        """Update every member, or none of them if any member's gradient is not finite (``apply_update_rule``)."""
        k = len(self.members)
        first = self.contexts[0]
        losses = [losses / k for losses, _, _ in outputs]  # so the result's loss is the members' mean
        q_taken = [q for _, q, _ in outputs]
        td_mean = mx.nd.add_n(*[td.as_in_context(first) for _, _, td in outputs]) / k
        return apply_update_rule([member.gradients for member in self.members], self._count_update, losses, q_taken,
                                 [td_mean])

    def _count_update(self) -> None:
        for member in self.members:
            member.nets.updated()
        self.learner_steps += 1
        if self.learner_steps % self.cfg.agent.target_update_every == 0:
            self.sync_target()

    def refresh_policy(self) -> None:
        for member in self.members:
            member.refresh_policy()

    def sync_target(self) -> None:
        for member in self.members:
            member.sync_target()

    # --- state ------------------------------------------------------------------------------------

    def save(self, directory: str) -> None:
        for k, member in enumerate(self.members):
            path = os.path.join(directory, f"member{k}")
            os.makedirs(path, exist_ok=True)
            member.save(path)
        with open(os.path.join(directory, "ensemble.json"), "w") as f:
            json.dump({"members": len(self.members), "returns": self.member_returns.tolist(),
                       "rng": self.rng.bit_generator.state, "acting_member": self.acting_member.tolist()}, f)

    def load(self, directory: str, with_optimizer: bool = True) -> None:
        try:
            with open(os.path.join(directory, "ensemble.json")) as f:
                state = json.load(f)
        except (OSError, json.JSONDecodeError):
            raise UserError(f"checkpoint {directory} holds no ensemble (made by another mode?)") from None
        if state["members"] != len(self.members):
            raise UserError(f"checkpoint holds {state['members']} members, this run has {len(self.members)}")
        for k, member in enumerate(self.members):
            member.load(os.path.join(directory, f"member{k}"), with_optimizer)
        self.set_member_returns(state["returns"])
        self.rng.bit_generator.state = state["rng"]
        self.acting_member[:] = state["acting_member"]
