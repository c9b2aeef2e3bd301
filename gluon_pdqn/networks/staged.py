"""Model parallelism: a Q-network's layers cut into stages, each stage's parameters on its own device."""
from __future__ import annotations

import numpy as np
import mxnet as mx
from mxnet import gluon

from .precision import lower_precision


def layer_sizes(network) -> list[int]:
    """Parameter count of each of ``network.layers()`` (shapes must be known: run one forward first)."""
    return [sum(int(np.prod(p.shape)) for p in layer.collect_params().values()) for layer in network.layers()]


def balanced_split(sizes: list[int], stages: int) -> list[int]:
    """Indices where stages 1..k-1 start, minimizing the largest stage's parameter count.

    Exhaustive over the ways to cut the layer list (a network has a handful of layers). Ties go to the
    later cut, so parameter-free layers (Flatten) stay with the stage before them.
    """
    if stages > len(sizes):
        raise ValueError(f"cannot cut {len(sizes)} layers into {stages} stages")
    best, best_cost = None, None
    for cuts in _cut_points(len(sizes), stages - 1, 1):
        bounds = [0, *cuts, len(sizes)]
        cost = max(sum(sizes[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
        if best_cost is None or cost <= best_cost:
            best, best_cost = list(cuts), cost
    return best


def _cut_points(n: int, count: int, start: int):
    if count == 0:
        yield ()
        return
    for i in range(start, n - count + 1):
        for rest in _cut_points(n, count - 1, i + 1):
            yield (i, *rest)


class Stage(gluon.HybridBlock):
    """A run of consecutive layers on one device (the first stage also runs the network's preprocessing)."""

    def __init__(self, layers, preprocess=None, **kwargs):
        super().__init__(**kwargs)
        self._preprocess = preprocess
        self.body = gluon.nn.HybridSequential(prefix="")
        for layer in layers:
            self.body.add(layer)

    def hybrid_forward(self, F, x):
        if self._preprocess is not None:
            x = self._preprocess(F, x)
        return self.body(x)


class StagedNetwork(gluon.HybridBlock):
    """``network`` cut at ``cuts`` with stage i on ``contexts[i]``; activations move between devices.

    The layers (and so the parameter names) stay the network's own: the unsplit network and the staged
    one share parameters, and checkpoints are the same either way. It is a HybridBlock only so that it can
    sit inside ``DQNLoss``; it runs imperatively (a static graph lives on one device) while each stage is
    hybridized on its own. Autograd follows ``as_in_context``
    across devices, so the backward pass runs stage by stage in reverse. With ``microbatches`` > 1 the
    batch is cut into pieces that flow through the stages one after another: MXNet's asynchronous engine
    can then run stage 0 on piece 2 while stage 1 works on piece 1.

    Args:
        network: an initialized network with ``layers()`` and ``preprocess`` (MLP, NatureCNN).
        contexts: one device per stage.
        cuts: indices into ``network.layers()`` where stages 1.. start (len(contexts) - 1 of them).
        microbatches: pieces each batch is cut into.
        hybridize: compile each stage to a static graph.
        precision: each stage's compute precision (see ``networks.precision``).
    """

    def __init__(self, network, contexts: list[mx.Context], cuts: list[int], microbatches: int = 1,
                 hybridize: bool = True, precision: str = "fp32"):
        super().__init__(prefix=network.prefix + "staged_")
        layers = network.layers()
        bounds = [0, *cuts, len(layers)]
        self.contexts = list(contexts)
        self.microbatches = microbatches
        self.stage_blocks = []
        for i, (ctx, a, b) in enumerate(zip(self.contexts, bounds[:-1], bounds[1:])):
            stage = Stage(layers[a:b], preprocess=network.preprocess if i == 0 else None, prefix=f"stage{i}_")
            stage.collect_params().reset_ctx(ctx)
            stage = lower_precision(stage, precision)
            if hybridize:
                stage.hybridize(static_alloc=True, static_shape=True)
            self.stage_blocks.append(stage)

    def stage_params(self) -> list[list[gluon.Parameter]]:
        """The parameters of each stage (all on that stage's device)."""
        return [list(stage.collect_params().values()) for stage in self.stage_blocks]

    def hybridize(self, active=True, **kwargs):
        """Stages are hybridized when built; the whole spans devices and stays imperative."""

    def forward(self, x):
        count = self.microbatches if x.shape[0] % self.microbatches == 0 else 1
        pieces = list(x.split(num_outputs=count, axis=0)) if count > 1 else [x]
        outputs = []
        for piece in pieces:
            for stage, ctx in zip(self.stage_blocks, self.contexts):
                piece = stage(piece.as_in_context(ctx))
            outputs.append(piece)
        return outputs[0] if len(outputs) == 1 else mx.nd.concat(*outputs, dim=0)
