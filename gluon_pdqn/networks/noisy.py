"""Noisy linear layers (Fortunato et al. 2018, factorised Gaussian noise): exploration learned by the network."""
from __future__ import annotations

import math

import mxnet as mx
import numpy as np
from mxnet import gluon


def scaled_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """f(eps) = sgn(eps) sqrt(|eps|) of unit Gaussians eps: the factorised noise of one side of a layer."""
    noise = rng.standard_normal(size).astype(np.float32)
    return np.sign(noise) * np.sqrt(np.abs(noise))


class NoisyDense(gluon.HybridBlock):
    """y = (mu_W + sigma_W * f(eps_out) f(eps_in)^T) x + mu_b + sigma_b * f(eps_out).

    ``weight`` and ``bias`` are the means (initialized uniform in +-1/sqrt(in_units), the paper's choice),
    ``weight_sigma`` and ``bias_sigma`` the learned noise scales (initialized to sigma0 / sqrt(in_units)).
    The noise f(eps_in), f(eps_out) is state of the layer (``noise_in``, ``noise_out``: parameters without
    gradients) that changes only when asked: ``resample`` draws it from a numpy Generator (the same draw on
    every device the layer lives on), ``silence`` sets it to zero, which leaves the means alone: a plain,
    deterministic dense layer, as evaluation and export use it. It starts silent.

    Args:
        units: outputs.
        in_units: inputs (needed up front: the noise's shape depends on it).
        activation: an MXNet activation name, or None.
        sigma0: the initial noise scale (0.5 in the paper).
        flatten: flatten inputs of more than two dimensions, as ``Dense`` does.
    """

    def __init__(self, units: int, in_units: int, activation: str | None = None, sigma0: float = 0.5,
                 flatten: bool = True, **kwargs):
        super().__init__(**kwargs)
        self._units, self._in_units, self._activation, self._flatten = units, in_units, activation, flatten
        bound = 1.0 / math.sqrt(in_units)
        sigma = sigma0 / math.sqrt(in_units)
        with self.name_scope():
            self.weight = self.params.get("weight", shape=(units, in_units), init=mx.init.Uniform(bound))
            self.bias = self.params.get("bias", shape=(units,), init=mx.init.Uniform(bound))
            self.weight_sigma = self.params.get("weight_sigma", shape=(units, in_units),
                                                init=mx.init.Constant(sigma))
            self.bias_sigma = self.params.get("bias_sigma", shape=(units,), init=mx.init.Constant(sigma))
            self.noise_in = self.params.get("noise_in", shape=(1, in_units), init=mx.init.Zero(), grad_req="null")
            self.noise_out = self.params.get("noise_out", shape=(units,), init=mx.init.Zero(), grad_req="null")

    def resample(self, rng: np.random.Generator) -> None:
        """Draw new noise (one draw for every device)."""
        noise_in = mx.nd.array(scaled_noise(rng, self._in_units).reshape(1, -1))
        noise_out = mx.nd.array(scaled_noise(rng, self._units))
        # Copied into each device's array directly: Parameter.set_data cost 3.5x the copy (354 against 101 us
        # for a (1, 64) parameter, once each on a loaded machine), and this runs before every update and action.
        for param, noise in ((self.noise_in, noise_in), (self.noise_out, noise_out)):
            for array in param.list_data():
                noise.copyto(array)

    def silence(self) -> None:
        """No noise: the layer computes with its means."""
        self.noise_in.set_data(mx.nd.zeros((1, self._in_units)))
        self.noise_out.set_data(mx.nd.zeros(self._units))

    def hybrid_forward(self, F, x, weight, bias, weight_sigma, bias_sigma, noise_in, noise_out):
        noisy_weight = weight + weight_sigma * F.broadcast_mul(F.reshape(noise_out, shape=(-1, 1)), noise_in)
        y = F.FullyConnected(x, noisy_weight, bias + bias_sigma * noise_out, num_hidden=self._units,
                             flatten=self._flatten)
        return F.Activation(y, act_type=self._activation) if self._activation else y


def noisy_layers(block: gluon.Block) -> list[NoisyDense]:
    """The noisy layers of ``block`` (a network, or a model-parallel stage), in order."""
    found = [block] if isinstance(block, NoisyDense) else []
    for child in block._children.values():
        found.extend(noisy_layers(child))
    return found


def resample_noise(block: gluon.Block, rng: np.random.Generator) -> None:
    """New noise in every noisy layer of ``block``."""
    for layer in noisy_layers(block):
        layer.resample(rng)


def silence_noise(block: gluon.Block) -> None:
    """No noise in any layer of ``block``: its means decide."""
    for layer in noisy_layers(block):
        layer.silence()
