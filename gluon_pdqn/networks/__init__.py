"""Q-networks as Gluon HybridBlocks, built by name through a registry."""
from __future__ import annotations

from typing import Callable

import mxnet as mx
import numpy as np
from mxnet import gluon

from ..architecture import CNNS, conv_multiply_adds, conv_output_size, image_shape, min_image_side, resolve_name
from ..config import NetworkConfig
from ..envs import EnvSpec
from ..errors import UserError
from .cnn import NUMPY_ACTING_MAX_MULTIPLY_ADDS, ConvQNetwork, EfficientCNN, NatureCNN, NumpyConvNet, SmallCNN
from .encoded import EncodedQNetwork, ObservationEncoder
from .heads import QHead
from .mlp import MLP, NumpyMLP
from .noisy import NoisyDense, noisy_layers, resample_noise, silence_noise

_REGISTRY: dict[str, Callable[..., gluon.HybridBlock]] = {}


def numpy_copy(block: gluon.HybridBlock) -> NumpyMLP | None:
    """A numpy evaluator of ``block`` to act with, where it beats an MXNet call: an MLP, or a CNN with small
    convolutions (MinAtar's); None for other networks. Load it with its ``parameters()`` (see ``NumpyMLP``)."""
    if isinstance(block, MLP):
        return NumpyMLP(block)
    if isinstance(block, ConvQNetwork) and block.numpy_acting:
        return NumpyConvNet(block)
    return None


def torch_default_init(block: gluon.Block) -> None:
    """Draw the dense and convolution layers' weights and biases of ``block`` (initialized, shapes known) again as
    PyTorch's layers draw theirs by default: uniform in +-1/sqrt(fan_in) (``kaiming_uniform_`` with a = sqrt(5)
    for weights). From MXNet's random generator, so the run's seed decides them. Noisy layers are left as they
    are."""
    stack = [block]
    while stack:
        layer = stack.pop()
        stack.extend(layer._children.values())
        if isinstance(layer, (gluon.nn.Dense, gluon.nn.Conv2D)):
            bound = 1.0 / float(np.sqrt(np.prod(layer.weight.shape[1:])))
            for param in (layer.weight, layer.bias):
                if param is not None:
                    param.set_data(mx.nd.random.uniform(-bound, bound, shape=param.shape))


def structural_params(block: gluon.Block) -> dict[str, gluon.Parameter]:
    """Parameters by their place in the block (``body.0.weight``), independent of the block's name prefix."""
    return dict(block._collect_params_with_prefix())


def register(name: str):
    """Decorator: make a network factory ``f(cfg, spec, prefix) -> HybridBlock`` available by ``name``.

    For the distributional algorithms (``agent.algo`` c51, qr-dqn) the factory is also given ``per_action``,
    the outputs per action (see ``heads.QHead``): ``f(cfg, spec, prefix, per_action)``.
    """
    def wrap(factory):
        _REGISTRY[name] = factory
        return factory
    return wrap


def _cnn(cls, name: str, spec: EnvSpec, cfg: NetworkConfig, prefix: str, per_action: int) -> gluon.HybridBlock:
    image = image_shape(spec)
    if image is None:
        raise UserError(f"network.name={name} needs image observations, but {spec.id} gives shape {spec.obs_shape}; "
                        "use network.name=auto or mlp")
    need = min_image_side(CNNS[name][0])
    if min(image[1:]) < need:
        raise UserError(f"{spec.id}'s {image[1]}x{image[2]} images are too small for network.name={name} (it needs "
                        f"at least {need}x{need}); use network.name=auto or small_cnn")
    scale = 1.0 / 255.0 if spec.obs_dtype == np.uint8 else 1.0
    noisy_in_units = conv_output_size(CNNS[name][0], image) if cfg.noisy else 0
    numpy_acting = conv_multiply_adds(CNNS[name][0], image) <= NUMPY_ACTING_MAX_MULTIPLY_ADDS
    return cls(spec.n_actions, cfg.dueling, stacked=len(spec.obs_shape) == 4, scale=scale, per_action=per_action,
               noisy_in_units=noisy_in_units, numpy_acting=numpy_acting, prefix=prefix)


@register("mlp")
def _mlp(cfg: NetworkConfig, spec: EnvSpec, prefix: str, per_action: int = 1) -> gluon.HybridBlock:
    noisy_in_units = int(np.prod(spec.obs_shape)) if cfg.noisy else 0
    return MLP(spec.n_actions, cfg.hidden, cfg.dueling, per_action, noisy_in_units, prefix=prefix)


@register("encoded")
def _encoded(cfg: NetworkConfig, spec: EnvSpec, prefix: str, per_action: int = 1) -> gluon.HybridBlock:
    if not spec.parts:
        raise UserError(f"network.name=encoded reads packed observations (Discrete, Dict...); {spec.id}'s are a "
                        "Box: use network.name=auto")
    return EncodedQNetwork(spec.parts, spec.n_actions, cfg.hidden, cfg.dueling, per_action, cfg.noisy, prefix=prefix)


@register("nature_cnn")
def _nature_cnn(cfg: NetworkConfig, spec: EnvSpec, prefix: str, per_action: int = 1) -> gluon.HybridBlock:
    return _cnn(NatureCNN, "nature_cnn", spec, cfg, prefix, per_action)


@register("small_cnn")
def _small_cnn(cfg: NetworkConfig, spec: EnvSpec, prefix: str, per_action: int = 1) -> gluon.HybridBlock:
    return _cnn(SmallCNN, "small_cnn", spec, cfg, prefix, per_action)


@register("efficient_cnn")
def _efficient_cnn(cfg: NetworkConfig, spec: EnvSpec, prefix: str, per_action: int = 1) -> gluon.HybridBlock:
    return _cnn(EfficientCNN, "efficient_cnn", spec, cfg, prefix, per_action)


def build(cfg: NetworkConfig, spec: EnvSpec, prefix: str, per_action: int = 1) -> gluon.HybridBlock:
    """An uninitialized Q-network for ``spec``: observations in, ``per_action`` outputs per action out (1: the
    Q-values; a return distribution's atoms or quantiles, see ``distributional.py``)."""
    name = resolve_name(cfg, spec)
    if spec.parts and name != "encoded":
        raise UserError(f"{spec.id}'s observations are packed from {len(spec.parts)} part(s) (Discrete, Dict...): "
                        f"network.name={name} cannot read them; use network.name=auto (or encoded)")
    if name not in _REGISTRY:
        raise UserError(f"unknown network {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    factory = _REGISTRY[name]
    return factory(cfg, spec, prefix) if per_action == 1 else factory(cfg, spec, prefix, per_action)


__all__ = ["MLP", "structural_params", "NoisyDense", "noisy_layers", "resample_noise", "silence_noise", "ConvQNetwork", "EfficientCNN", "EncodedQNetwork", "ObservationEncoder", "NatureCNN", "NumpyMLP", "NumpyConvNet", "numpy_copy", "QHead", "SmallCNN", "build", "image_shape", "register",
           "resolve_name"]
