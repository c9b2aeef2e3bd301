"""The convolutional Q-network of Mnih et al. (2015)."""
from __future__ import annotations

from mxnet import gluon

from .heads import QHead


class NatureCNN(gluon.HybridBlock):
    """Conv 32x8x8/4, 64x4x4/2, 64x3x3/1, dense 512, Q head; takes uint8 frames and scales them inside.

    Args:
        n_actions: number of discrete actions.
        dueling: use the dueling head.
    """

    def __init__(self, n_actions: int, dueling: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.n_actions = n_actions
        with self.name_scope():
            self.features = gluon.nn.HybridSequential()
            self.features.add(gluon.nn.Conv2D(32, 8, strides=4, activation="relu"),
                              gluon.nn.Conv2D(64, 4, strides=2, activation="relu"),
                              gluon.nn.Conv2D(64, 3, strides=1, activation="relu"),
                              gluon.nn.Flatten(),
                              gluon.nn.Dense(512, activation="relu"))
            self.head = QHead(n_actions, dueling)

    def hybrid_forward(self, F, frames):
        return self.head(self.features(self.preprocess(F, frames)))

    @staticmethod
    def preprocess(F, frames):
        """uint8 on the wire (4x less host-to-device traffic), float32 in [0, 1] inside."""
        return F.cast(frames, "float32") / 255.0

    def layers(self) -> list:
        """The network's layers in order, the units a model-parallel split places on devices."""
        return list(self.features) + [self.head]
