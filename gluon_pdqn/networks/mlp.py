"""A multilayer perceptron Q-network, and a numpy copy of it for acting."""
from __future__ import annotations

import numpy as np
from mxnet import gluon

from .heads import QHead


class MLP(gluon.HybridBlock):
    """ReLU layers of widths ``hidden`` over the flattened observation, then a Q head.

    Args:
        n_actions: number of discrete actions (outputs).
        hidden: widths of the hidden layers.
        dueling: use the dueling head.
        per_action: outputs per action (see ``QHead``).
    """

    def __init__(self, n_actions: int, hidden=(64, 64), dueling: bool = False, per_action: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.n_actions = n_actions
        with self.name_scope():
            self.body = gluon.nn.HybridSequential()
            for width in hidden:
                self.body.add(gluon.nn.Dense(width, activation="relu"))
            self.head = QHead(n_actions, dueling, per_action)

    def hybrid_forward(self, F, obs):
        return self.head(self.body(self.preprocess(F, obs)))

    @staticmethod
    def preprocess(F, obs):
        """What comes before the first layer (model-parallel stages run it on the first device)."""
        return F.flatten(obs)

    def layers(self) -> list:
        """The network's layers in order, the units a model-parallel split places on devices."""
        return list(self.body) + [self.head]


class NumpyMLP:
    """The outputs of an :class:`MLP` evaluated in numpy from a copy of its weights (what it acts on).

    Why: on a CPU, one MXNet forward of a small MLP costs about 250 us of framework overhead (measured on
    this project's 2-core machine), ten times the arithmetic; acting calls it once per env step. The learner
    refreshes the copy with one device read after its parameters change, so acting is exact, not stale.
    """

    def __init__(self, mlp: MLP):
        self.dueling = mlp.head.dueling
        self.n_actions, self.per_action = mlp.head.n_actions, mlp.head.per_action
        self._layers = [layer for layer in mlp.body] + [mlp.head.advantage]
        if self.dueling:
            self._layers.append(mlp.head.value)
        self._weights: list[tuple[np.ndarray, np.ndarray]] = []

    def parameters(self):
        """Gluon parameters in the order ``load`` expects them (weight, bias per layer)."""
        for layer in self._layers:
            yield layer.weight
            yield layer.bias

    def load(self, flat: np.ndarray) -> None:
        """Take the weights from ``flat``, the concatenation of ``parameters()`` flattened in order."""
        self._weights, offset = [], 0
        for layer in self._layers:
            w_shape, b_shape = layer.weight.shape, layer.bias.shape
            w = flat[offset:offset + int(np.prod(w_shape))].reshape(w_shape)
            offset += w.size
            b = flat[offset:offset + int(np.prod(b_shape))]
            offset += b.size
            self._weights.append((np.ascontiguousarray(w.T), b))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        h = obs.reshape(obs.shape[0], -1).astype(np.float32, copy=False)
        n_body = len(self._weights) - (2 if self.dueling else 1)
        for w, b in self._weights[:n_body]:
            h = np.maximum(h @ w + b, 0.0)
        w, b = self._weights[n_body]
        q = h @ w + b
        if self.dueling:
            w_v, b_v = self._weights[n_body + 1]
            advantage = q.reshape(len(q), self.n_actions, self.per_action)
            value = (h @ w_v + b_v)[:, None, :]
            q = (value + advantage - advantage.mean(axis=1, keepdims=True)).reshape(len(q), -1)
        return q
