"""Learners: one interface (``q_values``, ``step``, ``sync_target``, ``save``, ``load``) per learner topology."""
from __future__ import annotations

import mxnet as mx

from ..config import MODES, Config, learner_topology
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
    """The replay learner of ``cfg``'s topology (``config.learner_topology``) over ``contexts``.

    Whoever collects the experience (an in-process vector env, apex actors, a parameter-server worker) does
    not matter here: every one of these learners takes replay batches.
    """
    topology = learner_topology(cfg.run)
    if cfg.run.precision == "fp16" and topology in ("model", "ensemble"):
        raise UserError(f"run.precision=fp16 (loss scaling) is built for the single, data and ps learners, not "
                        f"{topology}; use fp32 there")
    if topology == "single":
        if len(contexts) != 1:
            raise UserError(f"the single learner trains on one device; --ctx names {len(contexts)} (--learner data "
                            "or model spreads it)" if cfg.run.mode == "apex" else
                            f"mode 'single' trains on one device; --ctx names {len(contexts)}")
        return SingleLearner(cfg, spec, contexts[0])
    if topology in _SPREAD and len(contexts) < 2:
        raise UserError(f"the {topology} learner {_SPREAD[topology]}; give --ctx two or more, e.g. cpu:0,cpu:1")
    if topology == "data":
        return DataParallelLearner(cfg, spec, contexts)
    if topology == "model":
        return ModelParallelLearner(cfg, spec, contexts)
    if topology == "ensemble":
        return EnsembleLearner(cfg, spec, contexts)
    if topology == "ps":
        if len(contexts) != 1:
            raise UserError(f"mode 'dist' trains on one device per worker; --ctx names {len(contexts)}")
        # The kvstore comes first: a process that joined the job after MXNet had run work hung (seen here).
        return DistLearner(cfg, spec, contexts[0], create_dist_kvstore(cfg.run.kvstore))
    raise UserError(f"mode '{cfg.run.mode}' has no replay learner; the replay modes are "
                    f"{', '.join(m for m in MODES if m != 'async')}")


__all__ = ["DataParallelLearner", "DistLearner", "EnsembleLearner", "Learner", "MODES", "ModelParallelLearner",
           "SingleLearner", "StepResult", "make_learner"]
