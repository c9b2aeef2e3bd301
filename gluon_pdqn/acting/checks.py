"""The fault checks every environment call of every collector goes through, threads and processes alike.

The environment may be the user's own code. Whatever it raises, and whatever it returns that no agent can
learn from (a non-finite reward or float observation, an observation of another shape or dtype than its
space promised), becomes an ``EnvironmentFault``: the loop writes a checkpoint of the work done and the
traceback to the run directory, and the command line prints one line and exits with code 4.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import EnvironmentFault


def environment_call(env_id: str, phase: str, function, *args, **kwargs):
    """``function(*args, **kwargs)`` on an environment; whatever it raises becomes an EnvironmentFault."""
    try:
        return function(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 (any exception of the user's code)
        raise EnvironmentFault(f"environment {env_id} raised {type(error).__name__}: {error} during "
                               f"{phase}") from error


def check_step(env_id: str, rewards: np.ndarray, observations: np.ndarray, obs_shape: tuple[int, ...],
               obs_dtype) -> None:
    """Refuse a step no agent can learn from.

    Args:
        env_id: the environment's id, for the message.
        rewards: (batch,) rewards of the step.
        observations: (batch, *obs_shape) observations it returned.
        obs_shape, obs_dtype: what one observation must be (``EnvSpec.obs_shape``, ``EnvSpec.obs_dtype``).
    """
    rewards = np.asarray(rewards)
    if not np.all(np.isfinite(rewards)):
        _non_finite_reward(env_id, rewards[~np.isfinite(rewards)][0])
    if not isinstance(observations, np.ndarray):
        _not_an_array(env_id, observations)
    _check_observations(env_id, observations, observations.shape[1:], obs_shape, obs_dtype)


def check_one(env_id: str, reward, observation, obs_shape: tuple[int, ...], obs_dtype) -> None:
    """``check_step`` for one environment's step (an async actor's), without building batch arrays."""
    try:
        finite = math.isfinite(reward)
    except TypeError:
        raise EnvironmentFault(f"environment {env_id} returned a reward of type {type(reward).__name__}, not a "
                               "number") from None
    if not finite:
        _non_finite_reward(env_id, reward)
    if not isinstance(observation, np.ndarray):
        _not_an_array(env_id, observation)
    _check_observations(env_id, observation, observation.shape, obs_shape, obs_dtype)


def _non_finite_reward(env_id: str, reward) -> None:
    raise EnvironmentFault(f"environment {env_id} returned a non-finite reward ({reward})")


def _not_an_array(env_id: str, observation) -> None:
    raise EnvironmentFault(f"environment {env_id} returned an observation of type {type(observation).__name__}, "
                           "not a numpy array")


def _check_observations(env_id: str, observations: np.ndarray, shape: tuple, obs_shape, obs_dtype) -> None:
    """Shape (``shape``: of one observation), dtype and, for floats, finiteness, against the space's."""
    if shape != tuple(obs_shape):
        raise EnvironmentFault(f"environment {env_id} returned an observation of shape {shape}, not "
                               f"{tuple(obs_shape)} as its observation space says")
    if observations.dtype != obs_dtype:
        raise EnvironmentFault(f"environment {env_id} returned an observation of dtype {observations.dtype}, "
                               f"not {np.dtype(obs_dtype)} as its observation space says")
    if observations.dtype.kind == "f" and not np.isfinite(observations).all():
        raise EnvironmentFault(f"environment {env_id} returned an observation with NaN or infinite values")
