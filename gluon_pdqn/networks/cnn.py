"""Convolutional Q-networks over image observations: the Nature CNN, a cheaper one for CPUs, and a small CNN for
small grids."""
from __future__ import annotations

from mxnet import gluon

from ..architecture import EFFICIENT_CNN, NATURE_CNN, SMALL_CNN
from .heads import QHead, linear


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
    """

    def __init__(self, n_actions: int, convolutions, dense: int, dueling: bool = False, *, stacked: bool = False,
                 scale: float = 1.0 / 255.0, per_action: int = 1, noisy_in_units: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.n_actions = n_actions
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
