"""Model-parallel DQN: each Q-network cut into stages, stage i on device i, one Trainer per stage.

The difference from one device (``single.OneDevice``): the networks are staged (activations move between devices,
and so does the backward pass), the loss runs on the last device, the gradient norm is summed over the
stages' devices, and each stage's Trainer updates its own parameters (a Trainer's parameters must share
one set of devices).
"""
from __future__ import annotations

import warnings

import gluonnlp
import mxnet as mx
from mxnet import autograd, gluon

from ..config import Config
from ..envs import EnvSpec
from ..errors import UserError
from ..networks.staged import StagedNetwork, balanced_split, layer_sizes
from ..replay import Batch
from .base import clip_scale
from .optimizers import make_optimizer
from .single import OneDevice, ReplayLearner, batch_inputs


def _cuts(split: str, sizes: list[int], stages: int) -> list[int]:
    """Stage boundaries: balanced by parameter count (``auto``) or the user's comma-separated layer indices."""
    if split == "auto":
        return balanced_split(sizes, stages)
    try:
        cuts = [int(c) for c in split.split(",")]
    except ValueError:
        raise UserError(f"run.model_split takes auto or layer indices such as 2 or 2,4; got '{split}'") from None
    if len(cuts) != stages - 1 or cuts != sorted(set(cuts)) or cuts[0] < 1 or cuts[-1] >= len(sizes):
        raise UserError(f"run.model_split '{split}' must name {stages - 1} increasing layer indices in "
                        f"1..{len(sizes) - 1} (the network has {len(sizes)} layers)")
    return cuts


class ModelParallel(OneDevice):
    """The placement of a learner with each network's layers spread over ``contexts`` (one stage per device).

    The networks are built whole on the first device (shapes resolved), then each stage's parameters move to
    its device (``place``). The loss spans devices, so it runs imperatively; each stage is a static graph of
    its own.

    Args:
        cfg: the run's configuration (``run.model_split``, ``run.microbatches``).
        contexts: one device per stage, at least two.
    """

    def __init__(self, cfg: Config, contexts: list[mx.Context]):
        self.cfg = cfg
        self.contexts = list(contexts)
        self.build_contexts = self.contexts[:1]
        self.cuts: list[int] = []
        self.online_staged = self.target_staged = None

    def place(self, nets, cfg: Config):
        sizes = layer_sizes(nets.online)
        if len(sizes) < len(self.contexts):
            raise UserError(f"the network has {len(sizes)} layers, too few for {len(self.contexts)} stages")
        self.cuts = _cuts(cfg.run.model_split, sizes, len(self.contexts))
        self.online_staged, self.target_staged = [
            StagedNetwork(net, self.contexts, self.cuts, cfg.run.microbatches, cfg.run.hybridize, cfg.run.precision)
            for net in (nets.online, nets.target)]
        if nets.acting_snapshot is None:  # (a snapshot is a whole network on the first device)
            nets.acting_network = self.online_staged
        return self.online_staged, self.target_staged, False

    def trainers(self, nets, cfg: Config) -> list:
        return [gluon.Trainer(params, make_optimizer(cfg.optim), update_on_kvstore=False)
                for params in self.online_staged.stage_params()]

    def stage_sizes(self) -> list[int]:
        """Parameters per stage."""
        return [sum(int(p.data().size) for p in params) for params in self.online_staged.stage_params()]

    def forward_backward(self, batch: Batch, target_block, loss_block, backward):
        obs, next_obs, scalars = batch_inputs(batch, self.contexts[0], len(batch.actions))
        scalars = scalars.as_in_context(self.contexts[-1])
        targets = target_block(next_obs, scalars)
        with autograd.record():
            losses, q_taken, td_abs = loss_block(obs, scalars, targets)
        backward([losses])
        return [losses], [q_taken], [td_abs]

    def norm_and_scale(self, loss_scale_array) -> tuple[mx.nd.NDArray, mx.nd.NDArray]:
        # Each stage's gradients live on its own device: one norm per stage, combined on the last device.
        # (fp16 is refused for this placement, so the loss scale is 1.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            norms = [gluonnlp.utils.grad_global_norm(params).as_in_context(self.contexts[-1])
                     for params in self.online_staged.stage_params()]
        norm = mx.nd.add_n(*[n * n for n in norms]).sqrt()
        return norm, clip_scale(mx.nd, norm, self.cfg.optim.max_grad_norm)


class ModelParallelLearner(ReplayLearner):
    """The replay learner with its networks staged over devices (``ModelParallel``).

    Args:
        cfg: the run's configuration (``run.model_split``, ``run.microbatches``).
        spec: the environment's spaces.
        contexts: one device per stage, at least two.
    """

    def __init__(self, cfg: Config, spec: EnvSpec, contexts: list[mx.Context]):
        super().__init__(cfg, spec, ModelParallel(cfg, contexts))

    @property
    def cuts(self) -> list[int]:
        return self.placement.cuts

    def stage_sizes(self) -> list[int]:
        return self.placement.stage_sizes()
