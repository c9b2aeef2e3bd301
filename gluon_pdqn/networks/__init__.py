"""Q-networks as Gluon HybridBlocks, built by name through a registry."""
from __future__ import annotations

from typing import Callable

from mxnet import gluon

from ..config import NetworkConfig
from ..envs import EnvSpec
from .heads import QHead
from .mlp import MLP, NumpyMLP
from .nature_cnn import NatureCNN

_REGISTRY: dict[str, Callable[..., gluon.HybridBlock]] = {}


def register(name: str):
    """Decorator: make a network factory ``f(cfg, spec, prefix) -> HybridBlock`` available by ``name``."""
    def wrap(factory):
        _REGISTRY[name] = factory
        return factory
    return wrap


@register("mlp")
def _mlp(cfg: NetworkConfig, spec: EnvSpec, prefix: str) -> gluon.HybridBlock:
    return MLP(spec.n_actions, cfg.hidden, cfg.dueling, prefix=prefix)


@register("nature_cnn")
def _nature_cnn(cfg: NetworkConfig, spec: EnvSpec, prefix: str) -> gluon.HybridBlock:
    if len(spec.obs_shape) != 3:
        raise ValueError(f"nature_cnn needs (stack, height, width) observations, got {spec.obs_shape}")
    return NatureCNN(spec.n_actions, cfg.dueling, prefix=prefix)


def resolve_name(cfg: NetworkConfig, spec: EnvSpec) -> str:
    """The registered network ``cfg.name`` stands for (``auto``: a CNN for image observations, else an MLP)."""
    if cfg.name != "auto":
        return cfg.name
    return "nature_cnn" if len(spec.obs_shape) == 3 and spec.obs_dtype.kind == "u" else "mlp"


def build(cfg: NetworkConfig, spec: EnvSpec, prefix: str) -> gluon.HybridBlock:
    """An uninitialized Q-network for ``spec`` (observations in, one Q-value per action out)."""
    name = resolve_name(cfg, spec)
    if name not in _REGISTRY:
        raise KeyError(f"unknown network {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](cfg, spec, prefix)


__all__ = ["MLP", "NatureCNN", "NumpyMLP", "QHead", "build", "register", "resolve_name"]
