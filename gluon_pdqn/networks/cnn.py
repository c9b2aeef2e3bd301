"""Convolutional Q-networks over image observations: the Nature CNN, a cheaper one for CPUs, and a small CNN for
small grids."""
from __future__ import annotations

import numpy as np
from mxnet import gluon

from ..architecture import EFFICIENT_CNN, NATURE_CNN, SMALL_CNN
from .heads import QHead, linear
from .mlp import NumpyMLP
from .noisy import NoisyDense

# Acting runs a numpy copy of a CNN whose convolutions cost at most this many multiply-adds per observation
# (MinAtar's network over 10x10 grids: 37k to 65k). Measured here: one MXNet call of MinAtar's network for one
# observation took 300 us, most of it the framework's; its numpy copy 31 us.
NUMPY_ACTING_MAX_MULTIPLY_ADDS = 500_000


class ConvQNetwork(gluon.HybridBlock):
    """ReLU convolutions, one ReLU dense layer, and a Q head, over (channels, height, width) images.

    Observations may also come stacked, (stack, channels, height, width): the stack and channel axes are
    merged into one channel axis inside. uint8 frames travel as uint8 (4x less host-to-device traffic) and are
    scaled to [0, 1] inside; other dtypes are taken to be in [0, 1] already.

    Args:
        n_actions: number of discrete actions.
        convolutions: (filters, kernel, stride) per convolution.
        dense: width of the dense layer.
        dueling: use the dueling head.
        stacked: observations have a stack axis before the channel axis.
        scale: factor applied to the observation after the cast to float32 (1/255 for uint8).
        per_action: outputs per action (see ``QHead``).
        noisy_in_units: the convolutions' flattened output size, to make the dense layer and the head noisy
            (``noisy.NoisyDense``); 0 for ordinary layers.
        numpy_acting: whether acting evaluates a numpy copy (``NumpyConvNet``): for convolutions this cheap, a
            numpy forward costs less than an MXNet call (see ``NUMPY_ACTING_MAX_MULTIPLY_ADDS``).
    """

    def __init__(self, n_actions: int, convolutions, dense: int, dueling: bool = False, *, stacked: bool = False,
                 scale: float = 1.0 / 255.0, per_action: int = 1, noisy_in_units: int = 0,
                 numpy_acting: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.n_actions = n_actions
        self.numpy_acting = numpy_acting
        self.convolutions = tuple(convolutions)
        self._stacked = stacked
        self._scale = scale
        with self.name_scope():
            self.features = gluon.nn.HybridSequential()
            for filters, kernel, stride in convolutions:
                self.features.add(gluon.nn.Conv2D(filters, kernel, strides=stride, activation="relu"))
            self.features.add(gluon.nn.Flatten(), linear(dense, noisy_in_units, activation="relu"))
            self.head = QHead(n_actions, dueling, per_action, noisy_in_units=dense if noisy_in_units else 0)

    def hybrid_forward(self, F, frames):
        return self.head(self.features(self.preprocess(F, frames)))

    def preprocess(self, F, frames):
        """What comes before the first layer (model-parallel stages run it on the first device)."""
        x = F.cast(frames, "float32")
        if self._stacked:
            x = F.reshape(x, shape=(0, -3, -2))  # (batch, stack, C, H, W) -> (batch, stack * C, H, W)
        return x * self._scale if self._scale != 1.0 else x

    def layers(self) -> list:
        """The network's layers in order, the units a model-parallel split places on devices."""
        return list(self.features) + [self.head]


class NumpyConvNet(NumpyMLP):
    """The outputs of a :class:`ConvQNetwork` evaluated in numpy from a copy of its weights (what it acts on).

    Each convolution is one matrix product over the image's patches (a strided view, copied once); then the
    dense layer and the head as in ``NumpyMLP``, noise included. Worth it only for small convolutions (see
    ``NUMPY_ACTING_MAX_MULTIPLY_ADDS``); then level with an MXNet call even refreshed after every update, and
    faster when updates are rarer (``learners.qnets``).
    """

    def __init__(self, net: ConvQNetwork):
        self._convolutions = [layer for layer in net.features if isinstance(layer, gluon.nn.Conv2D)]
        dense = [layer for layer in net.features if not isinstance(layer, (gluon.nn.Conv2D, gluon.nn.Flatten))]
        self._init_dense(dense, net.head, noisy=any(isinstance(layer, NoisyDense) for layer in dense))
        self._geometry = [(kernel, stride) for _, kernel, stride in net.convolutions]
        self._stacked, self._scale = net._stacked, net._scale
        self._kernels: list[tuple[np.ndarray, np.ndarray]] = []

    def parameters(self):
        """Gluon parameters in the order ``load`` expects them: the convolutions' weights and biases, then the rest."""
        for conv in self._convolutions:
            yield conv.weight
            yield conv.bias
        yield from super().parameters()

    def load(self, flat: np.ndarray) -> None:
        self._kernels, offset = [], 0
        for conv in self._convolutions:
            filters = conv.weight.shape[0]
            size = int(np.prod(conv.weight.shape))
            # (filters, channels, k, k) as (channels * k * k, filters): patches @ kernel.
            kernel = np.ascontiguousarray(flat[offset:offset + size].reshape(filters, -1).T)
            bias = flat[offset + size:offset + size + filters]
            self._kernels.append((kernel, bias))
            offset += size + filters
        super().load(flat[offset:])

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = obs.astype(np.float32)
        if self._stacked:  # (batch, stack, C, H, W) -> (batch, stack * C, H, W)
            x = x.reshape(x.shape[0], -1, *x.shape[3:])
        if self._scale != 1.0:
            x *= np.float32(self._scale)
        for (kernel, bias), (size, stride) in zip(self._kernels, self._geometry):
            batch, channels, height, width = x.shape
            out_h, out_w = (height - size) // stride + 1, (width - size) // stride + 1
            s_batch, s_channel, s_row, s_column = x.strides
            patches = np.lib.stride_tricks.as_strided(
                x, (batch, out_h, out_w, channels, size, size),
                (s_batch, s_row * stride, s_column * stride, s_channel, s_row, s_column))
            y = np.maximum(patches.reshape(batch * out_h * out_w, -1) @ kernel + bias, 0.0)
            x = y.reshape(batch, out_h, out_w, -1).transpose(0, 3, 1, 2)  # back to (batch, filters, H', W')
        return self._dense(np.ascontiguousarray(x).reshape(x.shape[0], -1))


class NatureCNN(ConvQNetwork):
    """Conv 32x8x8/4, 64x4x4/2, 64x3x3/1, dense 512, Q head (Mnih et al. 2015); images of at least 36x36."""

    def __init__(self, n_actions: int, dueling: bool = False, **kwargs):
        super().__init__(n_actions, *NATURE_CNN, dueling, **kwargs)


class SmallCNN(ConvQNetwork):
    """Conv 16x3x3/1, dense 128, Q head: MinAtar's network (Young & Tian 2019) for small grids like 10x10."""

    def __init__(self, n_actions: int, dueling: bool = False, **kwargs):
        super().__init__(n_actions, *SMALL_CNN, dueling, **kwargs)


class EfficientCNN(ConvQNetwork):
    """Conv 32x5x5/5, 64x5x5/5, dense 256, Q head: data-efficient Rainbow's network (van Hasselt et al. 2019),
    about a quarter of the Nature CNN's update cost on 84x84 frames; images of at least 30x30."""

    def __init__(self, n_actions: int, dueling: bool = False, **kwargs):
        super().__init__(n_actions, *EFFICIENT_CNN, dueling, **kwargs)
