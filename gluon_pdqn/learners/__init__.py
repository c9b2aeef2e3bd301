"""Learners: one interface (``q_values``, ``step``, ``sync_target``, ``save``, ``load``) per parallelism mode."""
from __future__ import annotations

import mxnet as mx

from ..config import Config
from ..envs import EnvSpec
from ..errors import UserError
from .base import Learner, StepResult
from .single import SingleLearner

MODES = ("single",)


def make_learner(cfg: Config, spec: EnvSpec, contexts: list[mx.Context]) -> Learner:
    """The learner of ``cfg.run.mode`` over ``contexts``."""
    if cfg.run.mode == "single":
        if len(contexts) != 1:
            raise UserError(f"mode 'single' trains on one device; --ctx names {len(contexts)}")
        return SingleLearner(cfg, spec, contexts[0])
    raise UserError(f"unknown mode '{cfg.run.mode}'; available: {', '.join(MODES)}")


__all__ = ["Learner", "MODES", "SingleLearner", "StepResult", "make_learner"]
