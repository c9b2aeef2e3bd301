"""Snapshots of environment state, so that a resumed run continues the very episodes it was in.

Only environments whose whole state is a few plain attributes can be captured (gymnasium's classic-control
family). For the rest, ``capture`` returns None and a resumed run starts fresh episodes: the learning state
(parameters, optimizer, replay, counters, exploration) still carries on exactly.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

_CAPTURABLE_MODULE = "gymnasium.envs.classic_control"
_STATE_ATTRIBUTES = ("state", "steps_beyond_terminated")


def _capture_one(env: gym.Env) -> dict | None:
    base = env.unwrapped
    if not type(base).__module__.startswith(_CAPTURABLE_MODULE):
        return None
    snapshot = {"rng": base.np_random.bit_generator.state, "attributes": {}, "elapsed_steps": None}
    layer = env
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, gym.wrappers.FrameStackObservation):
            return None  # its frame deque is state we do not capture
        if isinstance(layer, gym.wrappers.TimeLimit):
            snapshot["elapsed_steps"] = layer._elapsed_steps
        layer = layer.env
    for name in _STATE_ATTRIBUTES:
        if hasattr(base, name):
            value = getattr(base, name)
            snapshot["attributes"][name] = (np.asarray(value).tolist() if isinstance(value, (np.ndarray, tuple))
                                            else value)
    return snapshot


def _restore_one(env: gym.Env, snapshot: dict) -> None:
    base = env.unwrapped
    base.np_random.bit_generator.state = snapshot["rng"]
    for name, value in snapshot["attributes"].items():
        setattr(base, name, np.asarray(value, dtype=np.float64) if isinstance(value, list) else value)
    layer = env
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, gym.wrappers.TimeLimit):
            layer._elapsed_steps = snapshot["elapsed_steps"]
        layer = layer.env


def capture(vector_env: gym.vector.SyncVectorEnv) -> dict | None:
    """A JSON-able snapshot of every sub-environment and the pending autoresets, or None if not capturable."""
    states = [_capture_one(env) for env in vector_env.envs]
    if any(s is None for s in states):
        return None
    return {"envs": states, "autoreset": vector_env._autoreset_envs.tolist()}


def restore(vector_env: gym.vector.SyncVectorEnv, snapshot: dict) -> None:
    """Put a vector env (already reset once) back into the state ``capture`` saw."""
    if len(snapshot["envs"]) != vector_env.num_envs:
        raise ValueError("snapshot holds a different number of environments")
    for env, state in zip(vector_env.envs, snapshot["envs"]):
        _restore_one(env, state)
    vector_env._autoreset_envs[:] = np.asarray(snapshot["autoreset"], dtype=bool)
