"""Learners: one interface (``q_values``, ``step``, ``sync_target``, ``save``, ``load``) per parallelism mode."""
from __future__ import annotations

import mxnet as mx

from ..config import MODES, Config
from ..envs import EnvSpec
from ..errors import UserError
from .base import Learner, StepResult
from ..parallel.kvstore import create_dist_kvstore
from .data_parallel import DataParallelLearner
from .distributed import DistLearner
from .ensemble import EnsembleLearner
from .model_parallel import ModelParallelLearner
from .single import SingleLearner


# What each multi-device mode spreads over its devices (for the error when it is given only one).
_SPREAD = {"data": "splits each batch over devices", "model": "places network stages on devices",
           "ensemble": "trains one network per device"}


def make_learner(cfg: Config, spec: EnvSpec, contexts: list[mx.Context]) -> Learner:
    """The learner of ``cfg.run.mode`` over ``contexts``."""
    if cfg.run.precision == "fp16" and cfg.run.mode in ("model", "ensemble"):
        raise UserError(f"run.precision=fp16 (loss scaling) is built for modes single, data and dist, not "
                        f"{cfg.run.mode}; use fp32 there")
    if cfg.run.mode == "single":
        if len(contexts) != 1:
            raise UserError(f"mode 'single' trains on one device; --ctx names {len(contexts)}")
        return SingleLearner(cfg, spec, contexts[0])
    if cfg.run.mode in _SPREAD and len(contexts) < 2:
        raise UserError(f"mode '{cfg.run.mode}' {_SPREAD[cfg.run.mode]}; give --ctx two or more, e.g. cpu:0,cpu:1")
    if cfg.run.mode == "data":
        return DataParallelLearner(cfg, spec, contexts)
    if cfg.run.mode == "model":
        return ModelParallelLearner(cfg, spec, contexts)
    if cfg.run.mode == "ensemble":
        return EnsembleLearner(cfg, spec, contexts)
    if cfg.run.mode == "dist":
        if len(contexts) != 1:
            raise UserError(f"mode 'dist' trains on one device per worker; --ctx names {len(contexts)}")
        # The kvstore comes first: a process that joined the job after MXNet had run work hung (seen here).
        return DistLearner(cfg, spec, contexts[0], create_dist_kvstore(cfg.run.kvstore))
    raise UserError(f"unknown mode '{cfg.run.mode}'; available: {', '.join(MODES)}")


__all__ = ["DataParallelLearner", "DistLearner", "EnsembleLearner", "Learner", "MODES", "ModelParallelLearner",
           "SingleLearner", "StepResult", "make_learner"]
