"""What a Q-network's outputs mean under each replay algorithm, and the expected Q-values they give.

- ``dqn``: one output per action, the Q-value itself.
- ``c51`` (Bellemare et al. 2017): ``agent.atoms`` logits per action, a categorical distribution over the
  return on ``atoms`` evenly spaced values ("the support") from ``agent.v_min`` to ``agent.v_max``.
- ``qr-dqn`` (Dabney et al. 2018): ``agent.quantiles`` outputs per action, the return's quantiles at the
  midpoints tau_i = (2 i + 1) / (2 N).

A network's outputs are always (batch, n_actions * per_action), action-major, so every network, head and
model-parallel split stays as it is; the losses (``losses.py``) and this module read them as
(batch, n_actions, per_action). Acting, evaluation, apex priorities and export use the expected Q-values:
sum_j p_j z_j for C51, the mean of the quantiles for QR-DQN.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import AgentConfig


@dataclass(frozen=True)
class ReturnModel:
    """How to read a network's outputs: the algorithm, outputs per action and, for C51, the support."""

    algo: str = "dqn"
    per_action: int = 1  # outputs per action: 1, the atoms, or the quantiles
    v_min: float = 0.0
    v_max: float = 0.0

    @classmethod
    def of(cls, agent: AgentConfig) -> "ReturnModel":
        if agent.algo == "c51":
            return cls("c51", agent.atoms, agent.v_min, agent.v_max)
        if agent.algo == "qr-dqn":
            return cls("qr-dqn", agent.quantiles)
        return cls()

    @property
    def distributional(self) -> bool:
        return self.algo != "dqn"

    @property
    def delta(self) -> float:
        """C51: the distance between neighbouring atoms."""
        return (self.v_max - self.v_min) / (self.per_action - 1)

    def support(self) -> np.ndarray:
        """C51: the atoms' returns z_0 .. z_{K-1}."""
        return (self.v_min + self.delta * np.arange(self.per_action)).astype(np.float32)

    def expected_q(self, outputs: np.ndarray, n_actions: int) -> np.ndarray:
        """Q-values (batch, n_actions) from a network's outputs (batch, n_actions * per_action), in numpy."""
        if not self.distributional:
            return outputs
        values = outputs.reshape(outputs.shape[0], n_actions, self.per_action).astype(np.float64)
        if self.algo == "qr-dqn":
            return values.mean(axis=2).astype(np.float32)
        probabilities = np.exp(values - values.max(axis=2, keepdims=True))
        probabilities /= probabilities.sum(axis=2, keepdims=True)
        return (probabilities @ self.support().astype(np.float64)).astype(np.float32)

    def expected_q_graph(self, F, values, support=None):
        """``expected_q`` as MXNet operators (``F``: nd or sym) of ``values`` (batch, n_actions, per_action), for
        graphs: targets and export. ``support`` (1, 1, atoms): C51's support as an input (export passes a graph
        constant); by default it is made on the device of ``values``.

        Means are written as sums times 1/N: MXNet's ONNX converter writes ReduceMean in a form ONNX rejects.
        """
        if self.algo == "qr-dqn":
            return F.sum(values, axis=2) * (1.0 / self.per_action)
        if support is None:
            atoms = F.contrib.arange_like(values, axis=2)
            support = F.reshape(atoms * self.delta + self.v_min, shape=(1, 1, self.per_action))
        return F.sum(F.broadcast_mul(F.softmax(values, axis=2), support), axis=2)
