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
        resample_noise(self, rng)

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


class _NoiseDestinations:
    """Where new noise for the noisy layers of one block goes: per device, flat views of its noise arrays.

    Built once per block and rebuilt when a noise parameter's arrays are no longer the ones seen (it holds
    them, so their identities stay meaningful).
    """

    def __init__(self, layers: list[NoisyDense]):
        self.params = [param for layer in layers for param in (layer.noise_in, layer.noise_out)]
        self.arrays = [param.list_data() for param in self.params]
        self.sizes = [int(np.prod(param.shape)) for param in self.params]  # the draws, in order
        self.bounds = [int(bound) for bound in np.cumsum([0] + self.sizes)]
        self.split_points = tuple(self.bounds[:-1])  # where _split_v2 cuts the flat draws
        by_device: dict = {}
        for index, arrays in enumerate(self.arrays):
            for array in arrays:
                by_device.setdefault(array.context, {})[index] = array.reshape((-1,))
        # A device that holds every noise array (every device but under model parallelism) gets all of them
        # from one split; the others one copy per array they hold.
        self.whole = {ctx: [views[i] for i in range(len(self.params))] for ctx, views in by_device.items()
                      if len(views) == len(self.params)}
        self.partial = {ctx: views for ctx, views in by_device.items() if ctx not in self.whole}

    def current(self) -> bool:
        for param, arrays in zip(self.params, self.arrays):
            now = param.list_data()
            if len(now) != len(arrays) or any(a is not b for a, b in zip(now, arrays)):
                return False
        return True

    def write(self, flat: mx.nd.NDArray) -> None:
        """Copy ``flat`` (every layer's noise_in and noise_out, in order) into the arrays."""
        for ctx, views in self.whole.items():
            source = flat if ctx == flat.context else flat.as_in_context(ctx)
            # The operator behind nd.split_v2, called directly: the wrapper takes no ``out``.
            mx.nd._internal._split_v2(source, indices=self.split_points, axis=0, out=views)
        for views in self.partial.values():
            for index, view in views.items():
                flat[self.bounds[index]:self.bounds[index + 1]].copyto(view)


def resample_noise(block: gluon.Block, rng: np.random.Generator) -> None:
    """New noise in every noisy layer of ``block``: per layer f(eps_in) then f(eps_out), in layer order.

    All layers' draws reach each device through one zero-copy array and one split: an ``nd.array`` per noise
    vector (a synchronous copy, about 190 us each under load) took two thirds of a cartpole-rainbow update
    (16 vectors for the online and target networks); one network's new noise now costs about 75 us.
    """
    destinations = getattr(block, "_noise_destinations", None)
    if destinations is None or not destinations.current():
        layers = noisy_layers(block)
        if not layers:
            return
        destinations = _NoiseDestinations(layers)
        block._noise_destinations = destinations
    draws = np.concatenate([scaled_noise(rng, size) for size in destinations.sizes])
    # Zero copy: the numpy buffer stays alive until the asynchronous copies that read it are done.
    destinations.write(mx.nd.from_numpy(draws, zero_copy=True))


def silence_noise(block: gluon.Block) -> None:
    """No noise in any layer of ``block``: its means decide."""
    for layer in noisy_layers(block):
        layer.silence()
