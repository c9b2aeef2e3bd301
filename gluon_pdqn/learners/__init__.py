"""Learners: one interface (``q_values``, ``step``, ``sync_target``, ``save``, ``load``) per learner placement.

The replay learners (single, data, model, ensemble, ps) take replay batches (``step``); the rollout learners
of mode async (``async_learners.py``) learn from actors' rollouts (``learn``). Which one a run uses is the
builder's choice (``gluon_pdqn.build.PLACEMENTS``).
"""
from .base import Learner, StepResult
from .data_parallel import DataParallelLearner
from .distributed import DistLearner
from .ensemble import EnsembleLearner
from .model_parallel import ModelParallelLearner
from .single import SingleLearner

__all__ = ["DataParallelLearner", "DistLearner", "EnsembleLearner", "Learner", "ModelParallelLearner",
           "SingleLearner", "StepResult"]
