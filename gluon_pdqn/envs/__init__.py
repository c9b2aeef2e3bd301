"""Environments: gymnasium factory, the Atari pipeline, vector envs and state snapshots (numpy only)."""
from .factory import EnvSpec, check_spaces, describe, is_atari, is_minatar, make_env, make_vector_env

__all__ = ["EnvSpec", "check_spaces", "describe", "is_atari", "is_minatar", "make_env", "make_vector_env"]
