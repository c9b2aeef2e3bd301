"""What observations the agent takes, and the one wrapper that brings a user's environment's into that form.

The agent takes a ``Box`` observation space. Vectors (any shape but images) reach it as float32. Images
reach it channels first, (C, H, W), as gymnasium's convention is channels last (H, W, C):

- uint8 images stay uint8 (0-255; the network scales them inside, and the replay stores one byte a pixel);
- bool images (MinAtar's grids) become uint8 0 or 255, so they take the same path and the same byte;
- float images stay float32, taken to be in [0, 1] already.

An observation of three axes is an image; one of two axes is an image (one channel) when its dtype is uint8 or
bool. Channels last or first is read from the shape (``env.channels = auto``): first only when the first axis
is at most 4 long and the last is longer, else last, the convention. ``env.channels`` says it where the shape
cannot (a 10x10x10 grid of 10 channels is read as channels last).
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from ..errors import UserError

def is_image(space: gym.spaces.Box) -> bool:
    """Whether a Box holds images: three axes, or two of uint8 or bool."""
    return len(space.shape) == 3 or (len(space.shape) == 2 and space.dtype in (np.uint8, np.bool_))


def channels_first(shape: tuple[int, ...], layout: str) -> bool:
    """Whether an image of ``shape`` has its channels on the first axis (``layout``: auto, last or first)."""
    if len(shape) == 2 or layout == "last":
        return False
    if layout == "first":
        return True
    return shape[0] <= 4 < shape[-1]


class AgentObservation(gym.ObservationWrapper):
    """Observations as the agent takes them (see the module's docstring): float32 vectors, CHW images.

    Args:
        env: an environment with a Box observation space.
        channels: ``auto``, ``last`` or ``first``: where an image's channel axis is.
    """

    def __init__(self, env: gym.Env, channels: str = "auto"):
        super().__init__(env)
        space = env.observation_space
        self._image = is_image(space)
        if not self._image:
            self._axes, self._to = None, np.float32
            self.observation_space = gym.spaces.Box(np.asarray(space.low, np.float32),
                                                    np.asarray(space.high, np.float32), dtype=np.float32)
            self.conversion = f"{space.dtype} vectors cast to float32"
            return
        shape = space.shape
        if len(shape) == 2:
            self._axes = None
            chw = (1,) + shape
        elif channels_first(shape, channels):
            self._axes = None
            chw = shape
        else:
            self._axes = (2, 0, 1)
            chw = (shape[2], shape[0], shape[1])
        if space.dtype == np.uint8 or space.dtype == np.bool_:
            self._to, low, high = np.uint8, 0, 255
        else:
            self._to, low, high = np.float32, 0.0, 1.0
        self._chw = chw
        self.observation_space = gym.spaces.Box(low, high, chw, dtype=self._to)
        layout = f"{shape} images as {chw}" if self._axes is not None or len(shape) == 2 else f"{shape} images"
        values = {np.dtype(np.bool_): ", bool cells as uint8 0/255", np.dtype(np.uint8): ""}.get(
            np.dtype(space.dtype), f", {space.dtype} values as float32")
        self.conversion = layout + values

    def observation(self, observation):
        obs = np.asarray(observation)
        if not self._image:
            return obs.astype(np.float32, copy=False)
        if obs.dtype == np.bool_:
            obs = obs.view(np.uint8) * np.uint8(255)
        if self._axes is not None:
            obs = obs.transpose(self._axes)
        return np.ascontiguousarray(obs.reshape(self._chw), dtype=self._to)


def needs_wrapping(space: gym.spaces.Box) -> bool:
    """Whether observations of ``space`` differ from what the agent takes (float32 vectors, CHW images)."""
    if is_image(space):
        return True
    return space.dtype != np.float32


def check_observation_space(space: gym.Space, env_id: str) -> None:
    """Refuse observation spaces the agent cannot take, in one line naming what would work."""
    if isinstance(space, gym.spaces.Box):
        if len(space.shape) > 3:
            raise UserError(f"{env_id} has observations of shape {space.shape}: gluon_pdqn takes vectors and "
                            "images of up to 3 axes (H, W, C); reshape them in a gymnasium ObservationWrapper")
        if not (np.issubdtype(space.dtype, np.number) or space.dtype == np.bool_):
            raise UserError(f"{env_id} has observations of dtype {space.dtype}: gluon_pdqn needs numbers")
        return
    if isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple)):
        advice = ("flatten it into one array with gymnasium.wrappers.FlattenObservation, or keep the image part "
                  "with an ObservationWrapper")
    elif isinstance(space, gym.spaces.Discrete):
        advice = "one-hot encode it with an ObservationWrapper (a Box of n floats)"
    else:
        advice = "turn it into numbers in a gymnasium ObservationWrapper"
    raise UserError(f"{env_id} has observation space {space}: gluon_pdqn needs a Box (an array of numbers); "
                    f"{advice}")
