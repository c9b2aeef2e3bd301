"""Noisy linear layers (Fortunato et al. 2018, factorised Gaussian noise): exploration learned by the network."""
from __future__ import annotations

import math

import mxnet as mx
import numpy as np
from mxnet import gluon


def _scaled(F, noise):
    """f(x) = sgn(x) sqrt(|x|), the factorised noise's scaling."""
    return F.sign(noise) * F.sqrt(F.abs(noise))


class NoisyDense(gluon.HybridBlock):
    """y = (mu_W + sigma_W * eps_W) x + mu_b + sigma_b * eps_b, with eps_W = f(eps_out) f(eps_in)^T and
    eps_b = f(eps_out), fresh unit Gaussians eps_in, eps_out at every call (on the layer's device).

    ``weight`` and ``bias`` are the means (initialized uniform in +-1/sqrt(in_units), the paper's choice),
    ``weight_sigma`` and ``bias_sigma`` the noise scales (initialized to sigma0 / sqrt(in_units)). Setting the
    sigmas to zero gives an ordinary dense layer; export does that (deployment acts on the means).

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
        self._units, self._activation, self._flatten = units, activation, flatten
        bound = 1.0 / math.sqrt(in_units)
        sigma = sigma0 / math.sqrt(in_units)
        with self.name_scope():
            self.weight = self.params.get("weight", shape=(units, in_units), init=mx.init.Uniform(bound))
            self.bias = self.params.get("bias", shape=(units,), init=mx.init.Uniform(bound))
            self.weight_sigma = self.params.get("weight_sigma", shape=(units, in_units),
                                                init=mx.init.Constant(sigma))
            self.bias_sigma = self.params.get("bias_sigma", shape=(units,), init=mx.init.Constant(sigma))

    def hybrid_forward(self, F, x, weight, bias, weight_sigma, bias_sigma):
        # ``*_like`` draws the noise on the parameters' device (a model-parallel stage may not be the default one).
        noise_in = _scaled(F, F.random.normal_like(F.slice_axis(weight, axis=0, begin=0, end=1)))  # (1, in)
        noise_out = _scaled(F, F.random.normal_like(bias))  # (units,)
        noisy_weight = weight + weight_sigma * F.broadcast_mul(F.reshape(noise_out, shape=(-1, 1)), noise_in)
        y = F.FullyConnected(x, noisy_weight, bias + bias_sigma * noise_out, num_hidden=self._units,
                             flatten=self._flatten)
        return F.Activation(y, act_type=self._activation) if self._activation else y


def numpy_noisy_weights(rng: np.random.Generator, weight_t: np.ndarray, bias: np.ndarray, weight_sigma_t: np.ndarray,
                        bias_sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One draw of a NoisyDense layer's weights in numpy (weights transposed: (in, units)), for acting copies."""
    def scaled(size):
        noise = rng.standard_normal(size).astype(np.float32)
        return np.sign(noise) * np.sqrt(np.abs(noise))

    noise_in, noise_out = scaled(weight_t.shape[0]), scaled(weight_t.shape[1])
    return weight_t + weight_sigma_t * np.outer(noise_in, noise_out), bias + bias_sigma * noise_out
