"""A multilayer perceptron Q-network, and a numpy copy of it for acting."""
from __future__ import annotations

import numpy as np
from mxnet import gluon

from .heads import QHead, linear
from .noisy import scaled_noise


class MLP(gluon.HybridBlock):
    """ReLU layers of widths ``hidden`` over the flattened observation, then a Q head.

    Args:
        n_actions: number of discrete actions (outputs).
        hidden: widths of the hidden layers.
        dueling: use the dueling head.
        per_action: outputs per action (see ``QHead``).
        noisy_in_units: the flattened observation's size, to make every layer noisy (``noisy.NoisyDense``); 0
            for ordinary layers.
    """

    def __init__(self, n_actions: int, hidden=(64, 64), dueling: bool = False, per_action: int = 1,
                 noisy_in_units: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.n_actions = n_actions
        self.noisy = bool(noisy_in_units)
        with self.name_scope():
            self.body = gluon.nn.HybridSequential()
            width_in = noisy_in_units
            for width in hidden:
                self.body.add(linear(width, width_in, activation="relu"))
                width_in = width if self.noisy else 0
            self.head = QHead(n_actions, dueling, per_action, noisy_in_units=width_in)

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
        self._init_dense(list(mlp.body), mlp.head, mlp.noisy)

    def _init_dense(self, body: list, head, noisy: bool) -> None:
        """Mirror the ReLU dense layers ``body`` and the Q head ``head``."""
        self.dueling = head.dueling
        self.n_actions, self.per_action = head.n_actions, head.per_action
        self._layers = body + [head.advantage]
        if self.dueling:
            self._layers.append(head.value)
        # A noisy network's copy holds noise of its own, which changes only when asked (``resample``, ``silence``),
        # as the network's does (``noisy.NoisyDense``); it starts silent.
        self.noisy = noisy
        self._noise: list[tuple[np.ndarray, np.ndarray]] = []
        self._weights: list[tuple] = []

    def _names(self) -> tuple[str, ...]:
        return ("weight", "bias", "weight_sigma", "bias_sigma") if self.noisy else ("weight", "bias")

    def parameters(self):
        """Gluon parameters in the order ``load`` expects them (weight, bias, and the noise scales, per layer)."""
        for layer in self._layers:
            for name in self._names():
                yield getattr(layer, name)

    def load(self, flat: np.ndarray) -> None:
        """Take the weights from ``flat``, the concatenation of ``parameters()`` flattened in order.

        The weights stay views of ``flat`` in Gluon's (out, in) layout, and products use their transposes as they
        are: copying them transposed took most of a refresh (1.2 of 1.6 ms for MinAtar's noisy network)."""
        self._weights, offset = [], 0
        for layer in self._layers:
            arrays = []
            for name in self._names():
                shape = getattr(layer, name).shape
                arrays.append(flat[offset:offset + int(np.prod(shape))].reshape(shape))
                offset += arrays[-1].size
            self._weights.append(tuple(arrays))

    def resample(self, rng: np.random.Generator) -> None:
        """New noise for every noisy layer (f(eps_in), f(eps_out), as ``NoisyDense.resample``)."""
        self._noise = [(scaled_noise(rng, w.shape[1]), scaled_noise(rng, w.shape[0])) for w, *_ in self._weights]

    def silence(self) -> None:
        """No noise: the means decide."""
        self._noise = []

    def _affine(self, index: int, h: np.ndarray) -> np.ndarray:
        """Layer ``index`` applied to ``h`` (batch, in), with the current noise.

        Factorised noise is applied without forming the noisy weight: h (W + S * outer(e_out, e_in))^T equals
        h W^T + ((h * e_in) S^T) * e_out, two products instead of an elementwise pass over the weight."""
        weight, bias = self._weights[index][:2]
        y = h @ weight.T + bias
        if self._noise:  # (only a noisy copy draws any)
            weight_sigma, bias_sigma = self._weights[index][2:]
            noise_in, noise_out = self._noise[index]
            y += ((h * noise_in) @ weight_sigma.T + bias_sigma) * noise_out
        return y

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self._dense(obs.reshape(obs.shape[0], -1).astype(np.float32, copy=False))

    def _dense(self, h: np.ndarray) -> np.ndarray:
        """The dense layers and the head over flat features ``h`` (batch, units)."""
        n_body = len(self._weights) - (2 if self.dueling else 1)
        for index in range(n_body):
            h = np.maximum(self._affine(index, h), 0.0)
        q = self._affine(n_body, h)
        if self.dueling:
            advantage = q.reshape(len(q), self.n_actions, self.per_action)
            value = self._affine(n_body + 1, h)[:, None, :]
            q = (value + advantage - advantage.mean(axis=1, keepdims=True)).reshape(len(q), -1)
        return q
