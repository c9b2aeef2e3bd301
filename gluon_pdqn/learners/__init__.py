"""Learners: one interface (``q_values``, ``step``, ``sync_target``, ``save``, ``load``) per learner topology.

The replay learners (single, data, model, ensemble, ps) take replay batches (``step``); the rollout learners
of mode async (``async_learners.py``) learn from actors' rollouts (``learn``).
"""
from __future__ import annotations

import os

import mxnet as mx

from ..config import MODES, Config, learner_topology
from ..envs import EnvSpec
from ..errors import UserError
from .base import Learner, StepResult
from ..parallel import Topology
from .data_parallel import DataParallelLearner
from .distributed import DistLearner
from .ensemble import EnsembleLearner
from .model_parallel import ModelParallelLearner
from .single import SingleLearner


# What each multi-device mode spreads over its devices (for the error when it is given only one).
_SPREAD = {"data": "splits each batch over devices", "model": "places network stages on devices",
           "ensemble": "trains one network per device"}


def make_learner(cfg: Config, spec: EnvSpec, contexts: list[mx.Context],
                 topology: Topology = Topology()) -> Learner:
    """The learner of ``cfg``'s topology (``config.learner_topology``) over ``contexts``.

    ``topology`` (``parallel.make_topology``) carries the kvstore of a parameter-server job (mode dist).

    Whoever collects the experience (an in-process vector env, apex actors, a parameter-server worker) does
    not matter to a replay learner: every one takes replay batches. Mode async's actors hand in rollouts,
    which its rollout learners (one device) learn from directly.
    """
    kind = learner_topology(cfg.run)
    if cfg.run.precision == "fp16" and kind in ("model", "ensemble"):
        raise UserError(f"run.precision=fp16 (loss scaling) is built for the single, data and ps learners, not "
                        f"{kind}; use fp32 there")
    if kind == "single":
        if len(contexts) != 1:
            raise UserError(f"the single learner trains on one device; --ctx names {len(contexts)} (--learner data "
                            "or model spreads it)" if cfg.run.mode == "apex" else
                            f"mode 'single' trains on one device; --ctx names {len(contexts)}")
        return SingleLearner(cfg, spec, contexts[0])
    if kind in _SPREAD and len(contexts) < 2:
        raise UserError(f"the {kind} learner {_SPREAD[kind]}; give --ctx two or more, e.g. cpu:0,cpu:1")
    if kind == "data":
        return DataParallelLearner(cfg, spec, contexts)
    if kind == "model":
        return ModelParallelLearner(cfg, spec, contexts)
    if kind == "ensemble":
        return EnsembleLearner(cfg, spec, contexts)
    if kind == "async":
        if len(contexts) != 1:
            raise UserError(f"mode 'async' learns on one device; --ctx names {len(contexts)}")
        from .async_learners import A3CLearner, AsyncQLearner

        return (A3CLearner if cfg.actors.algo == "a3c" else AsyncQLearner)(cfg, spec, contexts[0])
    if kind == "ps":
        if len(contexts) != 1:
            raise UserError(f"mode 'dist' trains on one device per worker; --ctx names {len(contexts)}")
        if topology.kvstore is None:
            raise UserError("mode dist learns on the servers of a parameter-server job; this process joined none")
        return DistLearner(cfg, spec, contexts[0], topology.kvstore)
    raise UserError(f"mode '{cfg.run.mode}' has no learner; the modes are {', '.join(MODES)}")


def load_policy(bundle: str, cfg: Config, spec: EnvSpec, contexts: list[mx.Context]) -> Learner:
    """The learner of checkpoint ``bundle`` with its parameters loaded, for acting (``greedy_values``) only.

    Data-, model-parallel, ps and async Q checkpoints hold the parameters of a single-device learner, so they
    load into one on ``contexts[0]``; an ensemble's members go round-robin on ``contexts`` (the devices it
    trained on may not exist here); an A3C checkpoint loads into an A3C learner.
    """
    from .. import checkpoint

    kind = learner_topology(cfg.run)
    if kind == "ensemble":
        members = len([name for name in os.listdir(bundle) if name.startswith("member")])
        learner = EnsembleLearner(cfg, spec, [contexts[i % len(contexts)] for i in range(max(members, 2))])
    elif kind == "async" and cfg.actors.algo == "a3c":
        from .async_learners import A3CLearner

        learner = A3CLearner(cfg, spec, contexts[0])
    else:
        learner = SingleLearner(cfg, spec, contexts[0])
    with checkpoint.reading(bundle, "its parameter files"):
        learner.load(bundle, with_optimizer=False)
    return learner


__all__ = ["DataParallelLearner", "DistLearner", "EnsembleLearner", "Learner", "MODES", "ModelParallelLearner",
           "SingleLearner", "StepResult", "load_policy", "make_learner"]
