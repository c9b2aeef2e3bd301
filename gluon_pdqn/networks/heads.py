"""Output heads that turn features into the values of each action: one Q-value, or a distribution's outputs."""
from __future__ import annotations

from mxnet import gluon

from .noisy import NoisyDense


def linear(units: int, noisy_in_units: int = 0, activation: str | None = None, flatten: bool = True):
    """A dense layer, or with ``noisy_in_units`` (its input width) a noisy one (``noisy.NoisyDense``)."""
    if noisy_in_units:
        return NoisyDense(units, noisy_in_units, activation=activation, flatten=flatten)
    return gluon.nn.Dense(units, activation=activation, flatten=flatten)


class QHead(gluon.HybridBlock):
    """A linear head, or the dueling head of Wang et al. (2016): Q = V + A - mean(A).

    ``per_action`` outputs per action (1: the Q-value; a distribution's atoms or quantiles, see
    ``distributional.py``), laid out action-major in (batch, n_actions * per_action). A dueling head then
    has ``per_action`` value outputs and centres the advantages over actions per atom (as Rainbow does).
    ``noisy_in_units`` (the features' width) makes its layers noisy.
    """

    def __init__(self, n_actions: int, dueling: bool = False, per_action: int = 1, noisy_in_units: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        self.dueling = dueling
        self.n_actions, self.per_action = n_actions, per_action
        with self.name_scope():
            self.advantage = linear(n_actions * per_action, noisy_in_units, flatten=False)
            if dueling:
                self.value = linear(per_action, noisy_in_units, flatten=False)

    def hybrid_forward(self, F, features):
        advantage = self.advantage(features)
        if not self.dueling:
            return advantage
        # The mean over actions as a sum: MXNet's ONNX converter writes ReduceMean in a form ONNX rejects.
        if self.per_action == 1:
            mean = F.sum(advantage, axis=1, keepdims=True) * (1.0 / self.n_actions)
            return F.broadcast_add(self.value(features), F.broadcast_sub(advantage, mean))
        advantage = F.reshape(advantage, shape=(0, self.n_actions, self.per_action))
        centred = F.broadcast_sub(advantage, F.sum(advantage, axis=1, keepdims=True) * (1.0 / self.n_actions))
        value = F.reshape(self.value(features), shape=(0, 1, self.per_action))
        return F.reshape(F.broadcast_add(value, centred), shape=(0, -1))
