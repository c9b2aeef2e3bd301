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

from dataclasses import dataclass

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


def image_layout(shape: tuple[int, ...], layout: str) -> tuple[tuple[int, int, int] | None, tuple[int, int, int]]:
    """How an image of ``shape`` reaches the agent: (the transpose to apply or None, its (C, H, W) shape)."""
    if len(shape) == 2:
        return None, (1,) + tuple(shape)
    if channels_first(shape, layout):
        return None, tuple(shape)
    return (2, 0, 1), (shape[2], shape[0], shape[1])


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
        self._axes, chw = image_layout(shape, channels)
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
    """Refuse observation spaces the agent cannot take, in one line naming what would work (the packed ones,
    ``needs_packing``, are checked by ``PackedObservation``)."""
    if isinstance(space, gym.spaces.Box):
        if len(space.shape) > 3:
            raise UserError(f"{env_id} has observations of shape {space.shape}: gluon_pdqn takes vectors and "
                            "images of up to 3 axes (H, W, C); reshape them in a gymnasium ObservationWrapper")
        if not (np.issubdtype(space.dtype, np.number) or space.dtype == np.bool_):
            raise UserError(f"{env_id} has observations of dtype {space.dtype}: gluon_pdqn needs numbers")
        return
    raise UserError(f"{env_id} has observation space {space}: gluon_pdqn takes Box, Discrete, MultiDiscrete, "
                    "MultiBinary, and Dict or Tuple of them; turn it into one of these in a gymnasium "
                    "ObservationWrapper")


# --- observation spaces other than a Box: packed into one array -----------------------------------------------
#
# Discrete, MultiDiscrete, MultiBinary, Dict and Tuple observations reach the agent packed into one flat array
# (``PackedObservation``), so the replay, the actors and the fault checks handle them as any vector: a Discrete
# part as its index (one-hot only inside the network), a MultiBinary part as its 0/1 values, an image part
# channels first, a Box part flattened. The array is uint8 where every part fits a byte (images of uint8 or bool,
# indices below 256, binary values) and float32 otherwise. ``Part`` records where each part lies, and the
# network's ``ObservationEncoder`` takes the array apart again: a CNN for each image, one-hot for indices.


@dataclass(frozen=True)
class Part:
    """Where one part of a packed observation lies and how the network reads it.

    Attributes:
        key: the part's key in the observation (``image``, ``direction``; ``a.b`` nested; ``""`` for the whole).
        kind: ``image`` (channels first, a CNN reads it), ``onehot`` (indices, one-hot encoded inside the
            network) or ``flat`` (numbers taken as they are).
        shape: the part's shape in the packed array: (C, H, W) for images, (count,) for indices and flat values.
        offset: where the part starts in the packed array.
        sizes: ``onehot``: the number of values of each index (a Discrete's n, a MultiDiscrete's nvec).
        scale: what the network multiplies the part by after the cast to float32 (1/255 for byte images).
        source_shape: the part's shape as the environment gives it (``()`` for a Discrete's index).
        starts: ``onehot``: the smallest value of each index (a Discrete's start), subtracted when packed.
        channels_last: ``image``: the environment gives it (H, W, C), packed as (C, H, W).
        boolean: ``image``: the environment gives bool cells, packed as 0 or 255.
    """

    key: str
    kind: str
    shape: tuple[int, ...]
    offset: int
    sizes: tuple[int, ...] = ()
    scale: float = 1.0
    source_shape: tuple[int, ...] = ()
    starts: tuple[int, ...] = ()
    channels_last: bool = False
    boolean: bool = False

    @property
    def size(self) -> int:
        """Values the part takes in the packed array."""
        return int(np.prod(self.shape))

    @property
    def encoded_size(self) -> int:
        """Values the part gives the dense layers, images not counted (their size depends on the CNN)."""
        return sum(self.sizes) if self.kind == "onehot" else self.size


def _describe(part: Part) -> str:
    if part.kind == "onehot":
        return f"one-hot of {'+'.join(str(n) for n in part.sizes)}"
    if part.kind == "image":
        return f"image {part.shape}"
    return f"{part.size} values"


def needs_packing(space: gym.Space) -> bool:
    """Whether observations of ``space`` reach the agent packed (every space but a Box)."""
    return isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary,
                              gym.spaces.Dict, gym.spaces.Tuple))


def _leaves(space: gym.Space, path: tuple = ()):
    """(key, path, space) of every leaf of a Dict or Tuple space, in the space's own order: ``path`` holds the
    Dict keys and Tuple positions down to the leaf, ``key`` the same joined with dots."""
    if isinstance(space, gym.spaces.Dict):
        for name, child in space.spaces.items():
            yield from _leaves(child, (*path, name))
    elif isinstance(space, gym.spaces.Tuple):
        for index, child in enumerate(space.spaces):
            yield from _leaves(child, (*path, index))
    else:
        yield ".".join(str(name) for name in path), path, space


def _byte_sized(space: gym.Space) -> bool:
    """Whether every value of a leaf fits a uint8 as it is packed."""
    if isinstance(space, gym.spaces.Box):
        return space.dtype in (np.uint8, np.bool_)
    if isinstance(space, gym.spaces.Discrete):
        return space.n <= 256
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(np.max(space.nvec)) <= 256
    return isinstance(space, gym.spaces.MultiBinary)


def _packable(space: gym.Space) -> bool:
    if isinstance(space, gym.spaces.Box):
        return len(space.shape) <= 3 and (np.issubdtype(space.dtype, np.number) or space.dtype == np.bool_)
    return isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary))


class PackedObservation(gym.ObservationWrapper):
    """Observations of any space but a Box, packed into one flat array (see the comment above ``Part``).

    Args:
        env: an environment whose observation space ``needs_packing``.
        channels: ``auto``, ``last`` or ``first``: where an image part's channel axis is.
        keys: the keys to keep (``env.observation_keys``); empty: every key whose values are numbers.

    Attributes:
        parts: the packed parts, in order.
        dropped: keys left out because their values are not numbers (a text ``mission``).
        conversion: what was done, as the start of a run reports it.
    """

    def __init__(self, env: gym.Env, channels: str = "auto", keys: tuple[str, ...] = ()):
        super().__init__(env)
        env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        leaves = list(_leaves(env.observation_space))
        paths = {key: path for key, path, _ in leaves}
        leaves = [(key, space) for key, _, space in leaves]
        if keys:
            known = [key for key, _ in leaves]
            missing = [key for key in keys if key not in known]
            if missing:
                raise UserError(f"env.observation_keys names {', '.join(missing)}, which {env_id}'s observations "
                                f"do not have; they have {', '.join(known)}")
            chosen = [(key, space) for key, space in leaves if key in keys]
            unusable = [key for key, space in chosen if not _packable(space)]
            if unusable:
                raise UserError(f"env.observation_keys names {', '.join(unusable)}, whose values are not numbers")
        else:
            chosen = [(key, space) for key, space in leaves if _packable(space)]
        self.dropped = tuple(key for key, _ in leaves if key not in {k for k, _ in chosen})
        if not chosen:
            raise UserError(f"{env_id} has observation space {env.observation_space}: none of its parts are numbers")
        self._dtype = np.uint8 if all(_byte_sized(space) for _, space in chosen) else np.float32
        self._readers, parts, offset = [], [], 0
        for key, space in chosen:
            part, reader = self._part(key, space, offset, channels)
            parts.append(part)
            self._readers.append((paths[key], reader))
            offset += part.size
        self.parts = tuple(parts)
        self._size = offset
        low, high = (0, 255) if self._dtype == np.uint8 else (-np.inf, np.inf)
        self.observation_space = gym.spaces.Box(low, high, (offset,), dtype=self._dtype)
        kind = type(env.observation_space).__name__
        described = ", ".join(f"{p.key or kind} {_describe(p)}" for p in self.parts)
        dropped = (f"; left out: {', '.join(self.dropped)} (not numbers; env.observation_keys chooses keys)"
                   if self.dropped else "")
        self.conversion = f"{kind} packed as {described}{dropped}"

    def _part(self, key: str, space: gym.Space, offset: int, channels: str):
        """The Part of a leaf and the function that turns one of its values into the part's values."""
        if isinstance(space, gym.spaces.Discrete):
            start = int(space.start)
            return (Part(key, "onehot", (1,), offset, (int(space.n),), starts=(start,)),
                    lambda v: np.asarray(v).reshape(1) - start)
        if isinstance(space, gym.spaces.MultiDiscrete):
            nvec = np.asarray(space.nvec).reshape(-1)
            starts = np.asarray(space.start).reshape(-1)
            return (Part(key, "onehot", (len(nvec),), offset, tuple(int(n) for n in nvec), source_shape=space.shape,
                         starts=tuple(int(s) for s in starts)),
                    lambda v: np.asarray(v).reshape(-1) - starts)
        if isinstance(space, gym.spaces.MultiBinary):
            size = int(np.prod(space.shape))
            return Part(key, "flat", (size,), offset, source_shape=space.shape), lambda v: np.asarray(v).reshape(-1)
        if is_image(space):
            shape = space.shape
            axes, chw = image_layout(shape, channels)
            byte_image = space.dtype in (np.uint8, np.bool_)
            boolean = space.dtype == np.bool_

            def image(value):
                value = np.asarray(value)
                if boolean:
                    value = value.view(np.uint8) * np.uint8(255)
                return (value.transpose(axes) if axes else value).reshape(-1)
            return Part(key, "image", chw, offset, scale=1.0 / 255.0 if byte_image else 1.0, source_shape=shape,
                        channels_last=axes is not None, boolean=boolean), image
        size = int(np.prod(space.shape))
        return Part(key, "flat", (size,), offset, source_shape=space.shape), lambda v: np.asarray(v).reshape(-1)

    def observation(self, observation):
        packed = np.empty(self._size, self._dtype)
        for (path, read), part in zip(self._readers, self.parts):
            value = observation
            for name in path:  # Dict keys and Tuple positions, down to the part
                value = value[name]
            packed[part.offset:part.offset + part.size] = read(value)
        return packed


AGENT_WRAPPERS = (AgentObservation, PackedObservation)  # the wrappers that bring observations into the agent's form
