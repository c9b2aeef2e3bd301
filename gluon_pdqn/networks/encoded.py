"""A Q-network over packed observations (Discrete, MultiDiscrete, MultiBinary, Dict, Tuple spaces): each part
read its own way, then dense layers over them all, as Stable-Baselines3's MultiInputPolicy does."""
from __future__ import annotations

from mxnet import gluon

from ..architecture import NATURE_CNN, SMALL_CNN, conv_output_size, min_image_side
from .mlp import MLP


def image_trunk(shape: tuple[int, int, int]):
    """The convolutions an image part of ``shape`` (C, H, W) goes through: the Nature CNN's where they fit,
    MinAtar's small CNN's for smaller images (MiniGrid's 7x7 views)."""
    return NATURE_CNN[0] if min(shape[1:]) >= min_image_side(NATURE_CNN[0]) else SMALL_CNN[0]


def encoded_size(parts) -> int:
    """Values the encoder gives the dense layers for ``parts`` (``envs.observations.Part``)."""
    return sum(conv_output_size(image_trunk(p.shape), p.shape) if p.kind == "image" else p.encoded_size
               for p in parts)


class ObservationEncoder(gluon.HybridBlock):
    """A packed observation taken apart: image parts through convolutions, indices one-hot encoded, the rest as
    they are, all flattened and concatenated.

    Args:
        parts: the packed observation's parts (``envs.observations.Part``), in order.
    """

    def __init__(self, parts, **kwargs):
        super().__init__(**kwargs)
        self.parts = tuple(parts)
        self._trunks = []
        with self.name_scope():
            for index, part in enumerate(self.parts):
                if part.kind != "image":
                    continue
                trunk = gluon.nn.HybridSequential(prefix=f"image{index}_")
                with trunk.name_scope():
                    for filters, kernel, stride in image_trunk(part.shape):
                        trunk.add(gluon.nn.Conv2D(filters, kernel, strides=stride, activation="relu"))
                    trunk.add(gluon.nn.Flatten())
                self.register_child(trunk, f"image{index}")
                self._trunks.append(trunk)

    def hybrid_forward(self, F, packed):
        x = F.cast(packed, "float32")
        pieces, trunks = [], iter(self._trunks)
        for part in self.parts:
            values = F.slice_axis(x, axis=1, begin=part.offset, end=part.offset + part.size)
            if part.kind == "image":
                image = F.reshape(values, shape=(-1, *part.shape))
                pieces.append(next(trunks)(image * part.scale if part.scale != 1.0 else image))
            elif part.kind == "onehot":
                for j, size in enumerate(part.sizes):
                    index = F.reshape(F.slice_axis(values, axis=1, begin=j, end=j + 1), shape=(-1,))
                    pieces.append(F.one_hot(index, size))
            else:
                pieces.append(values)
        return F.concat(*pieces, dim=1) if len(pieces) > 1 else pieces[0]


class EncodedQNetwork(gluon.HybridBlock):
    """An ``ObservationEncoder`` under an ``MLP`` (its ReLU dense layers of widths ``hidden`` and its Q head).

    Args:
        parts: the packed observation's parts.
        n_actions: number of discrete actions.
        hidden: widths of the dense layers.
        dueling: use the dueling head.
        per_action: outputs per action (see ``QHead``).
        noisy: make the dense layers and the head noisy (``noisy.NoisyDense``).
    """

    def __init__(self, parts, n_actions: int, hidden=(64, 64), dueling: bool = False, per_action: int = 1,
                 noisy: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.n_actions = n_actions
        with self.name_scope():
            self.encoder = ObservationEncoder(parts, prefix="encoder_")
            self.mlp = MLP(n_actions, hidden, dueling, per_action, encoded_size(parts) if noisy else 0,
                           prefix="mlp_")

    def hybrid_forward(self, F, packed):
        return self.mlp(self.encoder(packed))

    @staticmethod
    def preprocess(F, packed):
        """Nothing comes before the encoder, the first of the layers a model-parallel split places."""
        return packed

    def layers(self) -> list:
        """The network's layers in order, the units a model-parallel split places on devices."""
        return [self.encoder, *self.mlp.layers()]
