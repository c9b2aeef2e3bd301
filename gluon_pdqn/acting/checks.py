"""The fault checks every environment call of every collector goes through, threads and processes alike.

The environment may be the user's own code. Whatever it raises, and whatever it returns that no agent can
learn from (a non-finite reward or float observation, an observation of another shape or dtype than its
space promised), becomes an ``EnvironmentFault``: the loop writes a checkpoint of the work done and the
traceback to the run directory, and the command line prints one line and exits with code 4.
"""
from __future__ import annotations

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
        bad = rewards[~np.isfinite(rewards)][0]
        raise EnvironmentFault(f"environment {env_id} returned a non-finite reward ({bad})")
    if not isinstance(observations, np.ndarray):
        raise EnvironmentFault(f"environment {env_id} returned an observation of type "
                               f"{type(observations).__name__}, not a numpy array")
    if observations.shape[1:] != tuple(obs_shape):
        raise EnvironmentFault(f"environment {env_id} returned an observation of shape {observations.shape[1:]}, "
                               f"not {tuple(obs_shape)} as its observation space says")
    if observations.dtype != np.dtype(obs_dtype):
        raise EnvironmentFault(f"environment {env_id} returned an observation of dtype {observations.dtype}, "
                               f"not {np.dtype(obs_dtype)} as its observation space says")
    if observations.dtype.kind == "f" and not np.all(np.isfinite(observations)):
        raise EnvironmentFault(f"environment {env_id} returned an observation with NaN or infinite values")

