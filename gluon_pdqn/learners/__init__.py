"""Learners: an algorithm (``algorithms``) and a placement put together around their networks (``qnets``).

The replay learners (``ReplayLearner`` on one device, data, model or ps placements; the ensemble of them) take
replay batches (``step``); the rollout learners of mode async (``async_learners.py``) learn from actors'
rollouts (``learn``). Which one a run uses is the builder's choice (``gluon_pdqn.build.PLACEMENTS``).
"""
from .base import Learner, StepResult
from .data_parallel import DataParallelLearner
from .distributed import DistLearner
from .ensemble import EnsembleLearner
from .model_parallel import ModelParallelLearner
from .single import ReplayLearner, SingleLearner

__all__ = ["DataParallelLearner", "DistLearner", "EnsembleLearner", "Learner", "ModelParallelLearner",
           "ReplayLearner", "SingleLearner", "StepResult"]
