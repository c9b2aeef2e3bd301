"""Environments by gymnasium id: checks that DQN can act in them, and builds single and vector envs."""
from __future__ import annotations

import functools
import importlib
import warnings
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from ..config import EnvConfig, parse_wrapper
from ..errors import UserError
from . import atari, observations


@dataclass(frozen=True)
class EnvSpec:
    """What the agent needs to know of an environment.

    Attributes:
        id: the gymnasium id it was made from.
        obs_shape: shape of one observation as the agent sees it (stacked frames included).
        obs_dtype: numpy dtype of observations (uint8 for images).
        frame_shape: shape of one frame, what the replay stores per step (obs_shape without the stack axis).
        frame_stack: frames per observation (1 when the env does not stack).
        n_actions: size of the discrete action space.
        is_atari: whether the Atari pipeline was applied.
    """

    id: str
    obs_shape: tuple[int, ...]
    obs_dtype: np.dtype
    frame_shape: tuple[int, ...]
    frame_stack: int
    n_actions: int
    is_atari: bool
    conversion: str = ""  # what envs/observations.py did to the env's observations ("" when nothing)
    parts: tuple = ()  # observations.Part of each part of a packed observation (Discrete, Dict...); () for a Box
    dropped_keys: tuple = ()  # keys of a Dict observation left out (their values are not numbers)


def _register_ale() -> None:
    import ale_py

    gym.register_envs(ale_py)


# Env steps after which an evaluation episode is truncated, for environments without a time limit of their
# own (env.max_episode_steps sets one for training and evaluation alike; ALE ids use the protocol's frame cap).
EVAL_EPISODE_STEP_CAP = 10_000


def _register_minatar() -> None:
    """Register MinAtar's gymnasium ids: gymnasium 1.x no longer loads plugin entry points by itself."""
    if "MinAtar/Breakout-v1" in gym.registry:
        return
    import minatar.gym

    minatar.gym.register_envs()


def _register_minigrid() -> None:
    import minigrid  # minigrid 3.x registers its ids on import; registering them again warns once per id

    if "MiniGrid-Empty-5x5-v0" not in gym.registry:
        minigrid.register_minigrid_envs()


# Packages that provide well-known environments, by the prefix of their ids, with what registers their ids
# (gymnasium 1.x loads no plugin entry points, and minigrid 3.2 declares none): a bare id of theirs works when
# the package is installed, as RL Zoo's --gym-packages does for any package. Others: env.packages.
KNOWN_PACKAGES = {
    "ALE/": ("ale-py", _register_ale),
    "MinAtar/": ("minatar", _register_minatar),
    "MiniGrid-": ("minigrid", _register_minigrid),
    "BabyAI-": ("minigrid", _register_minigrid),
}


def import_packages(cfg: EnvConfig) -> None:
    """Import what registers ``cfg.id``: its known package, and every module of ``env.packages``."""
    for prefix, (package, register) in KNOWN_PACKAGES.items():
        if cfg.id.startswith(prefix) and cfg.id not in gym.registry:
            try:
                register()
            except ImportError:
                raise UserError(f"{cfg.id} is an environment of the package {package}, which is not installed "
                                f"(pip install {package})") from None
    for module in cfg.packages:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise UserError(f"env.packages names {module}, which cannot be imported: {e}") from None


def apply_wrappers(env: gym.Env, cfg: EnvConfig) -> gym.Env:
    """``env`` inside the wrappers ``env.wrappers`` names, first innermost (RL Zoo's ``env_wrapper``)."""
    for text in cfg.wrappers:
        path, kwargs = parse_wrapper(text)
        module, _, name = path.rpartition(".")
        try:
            wrapper = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise UserError(f"env.wrappers: cannot import {path}: {e}") from None
        try:
            env = wrapper(env, **kwargs)
        except Exception as e:  # noqa: BLE001 (whatever the user's wrapper raises)
            raise UserError(f"env.wrappers: {text} could not wrap {cfg.id}: {type(e).__name__}: {e}") from None
    return env


def is_minatar(env_id: str) -> bool:
    """Whether ``env_id`` names a MinAtar game (``MinAtar/Breakout-v1`` and friends)."""
    return env_id.startswith("MinAtar/")


def is_atari(env_id: str) -> bool:
    """Whether ``env_id`` is an ALE game (``ALE/Pong-v5``, ``PongNoFrameskip-v4``): it gets the Atari pipeline."""
    if env_id.startswith("ALE/"):
        _register_ale()
    try:
        entry = gym.spec(env_id).entry_point
    except gym.error.Error:
        return False
    return isinstance(entry, str) and entry.startswith("ale_py")


def _make_raw(cfg: EnvConfig, evaluation: bool, render_mode: str | None) -> gym.Env:
    """One environment with its pipeline; gymnasium's errors become a one-line UserError."""
    import_packages(cfg)
    try:
        if is_atari(cfg.id):
            return apply_wrappers(atari.make_atari(cfg, evaluation=evaluation, render_mode=render_mode), cfg)
        kwargs = {"render_mode": render_mode} if render_mode else {}
        if cfg.max_episode_steps > 0:
            kwargs["max_episode_steps"] = cfg.max_episode_steps
        with warnings.catch_warnings():
            if is_minatar(cfg.id):
                # MinAtar's -v0 ids play all 6 actions, as the paper did (-v1: each game's minimal set): a choice,
                # not an outdated id, which gymnasium would say on every environment made.
                warnings.filterwarnings("ignore", message=".*is out of date", category=DeprecationWarning)
            env = gym.make(cfg.id, **kwargs)
        if evaluation and cfg.max_episode_steps == 0 and (env.spec is None or env.spec.max_episode_steps is None):
            # An evaluation must end: an environment without a time limit of its own gets this one.
            env = gym.wrappers.TimeLimit(env, EVAL_EPISODE_STEP_CAP)
        try:
            env = apply_wrappers(env, cfg)
            env = _agent_observations(env, cfg)
        except UserError:
            env.close()
            raise
    except (gym.error.NameNotFound, gym.error.NamespaceNotFound) as e:
        raise UserError(f"cannot make environment '{cfg.id}': {e} (if a package registers it, name the package: "
                        f"--env PACKAGE:{cfg.id} or --set env.packages=PACKAGE)") from None
    except gym.error.Error as e:
        raise UserError(f"cannot make environment '{cfg.id}': {e}") from None
    except ModuleNotFoundError as e:
        module = e.name or cfg.id.partition(":")[0]
        raise UserError(f"cannot make environment '{cfg.id}': no module named '{module}' (a `module:Name-v0` id "
                        "imports the module first; is it installed, or on PYTHONPATH?)") from None
    except (ImportError, TypeError, ValueError) as e:
        raise UserError(f"cannot make environment '{cfg.id}': {e}") from None
    if cfg.frame_stack > 1:
        env = gym.wrappers.FrameStackObservation(env, cfg.frame_stack, padding_type="reset")
    return env


def _agent_observations(env: gym.Env, cfg: EnvConfig) -> gym.Env:
    """``env`` with its observations in the form the agent takes (see ``envs.observations``)."""
    space = env.observation_space
    if observations.needs_packing(space):
        if cfg.frame_stack > 1:
            raise UserError(f"env.frame_stack stacks Box observations; {cfg.id}'s are {type(space).__name__}")
        return observations.PackedObservation(env, cfg.channels, cfg.observation_keys)
    observations.check_observation_space(space, cfg.id)
    if observations.needs_wrapping(space):
        return observations.AgentObservation(env, cfg.channels)
    return env


def check_spaces(env: gym.Env, env_id: str) -> None:
    """Refuse an action space DQN cannot act in (observation spaces are checked as the env is made)."""
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise UserError(f"{env_id} has action space {env.action_space}: DQN needs a discrete action space "
                        "(gymnasium.spaces.Discrete)")


def make_env(cfg: EnvConfig, *, evaluation: bool = False, render_mode: str | None = None) -> gym.Env:
    """A single environment: the training pipeline, or the full-game evaluation pipeline for Atari ids."""
    env = _make_raw(cfg, evaluation, render_mode)
    try:
        check_spaces(env, cfg.id)
    except UserError:
        env.close()
        raise
    return env


def _atari_stack(cfg: EnvConfig) -> int:
    return atari.FRAME_STACK if is_atari(cfg.id) else cfg.frame_stack


def describe(cfg: EnvConfig) -> EnvSpec:
    """The EnvSpec of ``cfg`` (makes one environment to read its spaces, then closes it)."""
    env = make_env(cfg)
    try:
        space = env.observation_space
        stack = _atari_stack(cfg)
        obs_shape = tuple(space.shape)
        frame_shape = obs_shape[1:] if stack > 1 else obs_shape
        wrapper = env
        while isinstance(wrapper, gym.Wrapper) and not isinstance(wrapper, observations.AGENT_WRAPPERS):
            wrapper = wrapper.env
        converted = isinstance(wrapper, observations.AGENT_WRAPPERS)
        packed = isinstance(wrapper, observations.PackedObservation)
        return EnvSpec(id=cfg.id, obs_shape=obs_shape, obs_dtype=np.dtype(space.dtype), frame_shape=frame_shape,
                       frame_stack=stack, n_actions=int(env.action_space.n), is_atari=is_atari(cfg.id),
                       conversion=wrapper.conversion if converted else "", parts=wrapper.parts if packed else (),
                       dropped_keys=wrapper.dropped if packed else ())
    finally:
        env.close()


def make_vector_env(cfg: EnvConfig, num_envs: int, *, evaluation: bool = False) -> gym.vector.SyncVectorEnv:
    """``num_envs`` environments stepped together, with gymnasium's next-step autoreset.

    After a step that ends an episode in env i, the next ``step`` call resets env i and ignores its action;
    the training loop must not store that step as a transition.
    """
    thunk = functools.partial(make_env, cfg, evaluation=evaluation)
    return gym.vector.SyncVectorEnv([thunk] * num_envs, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
