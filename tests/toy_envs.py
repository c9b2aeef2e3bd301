"""Small environments for tests, registered on import (used as `toy_envs:Name-v0`)."""
import time

import gymnasium as gym
import numpy as np


class CountingEnv(gym.Env):
    """Observation = [step index, episode id] as float32; reward = step index; ends after `length` steps.

    Deterministic, so tests can compute returns and stacked frames by hand.
    """

    def __init__(self, length=5, terminate=True, image=False):
        self.length, self.terminate, self.image = length, terminate, image
        self.action_space = gym.spaces.Discrete(2)
        if image:
            self.observation_space = gym.spaces.Box(0, 255, (6, 6), np.uint8)
        else:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.t, self.episode = 0, -1

    def _obs(self):
        if self.image:
            return np.full((6, 6), (self.t + 10 * self.episode) % 256, dtype=np.uint8)
        return np.array([self.t, self.episode], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.episode = 0, self.episode + 1
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        done = self.t >= self.length
        return self._obs(), float(self.t), done and self.terminate, done and not self.terminate, {}


class SlowFirstWorkerEnv(CountingEnv):
    """CountingEnv whose steps take 3 ms when it was reset with a seed below 1,000: in a job of workers seeded
    ``run.seed + 1000 x rank`` (``--seed 0``), rank 0's environment is slow and the others' fast."""

    slow = False

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.slow = seed < 1000
        return super().reset(seed=seed, options=options)

    def step(self, action):
        if self.slow:
            time.sleep(0.003)
        return super().step(action)


class NanRewardEnv(gym.Env):
    """CartPole-like shapes, but every reward after the first 300 steps is NaN."""

    def __init__(self):
        self.action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.spaces.Box(-1, 1, (4,), np.float32)
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(4, np.float32), {}

    def step(self, action):
        self.steps += 1
        reward = float("nan") if self.steps > 300 else 1.0
        return self.np_random.uniform(-1, 1, 4).astype(np.float32), reward, self.steps % 20 == 0, False, {}


class FailingEnv(NanRewardEnv):
    """Raises from step() after 200 steps, like a user's environment with a bug."""

    def step(self, action):
        if self.steps >= 200:
            raise RuntimeError("the environment broke")
        return super().step(action)


class HugeObservationEnv(NanRewardEnv):
    """Finite but huge observations after 300 steps: the network's outputs overflow, its gradients are NaN."""

    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        if self.steps > 300:
            obs = np.full(4, 3e38, np.float32)
        return obs, 1.0, terminated, truncated, info


class WrongShapeOnceEnv(NanRewardEnv):
    """Returns one observation of the wrong shape at step 250."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self.steps == 250:
            obs = np.zeros(7, np.float32)
        return obs, 1.0, terminated, truncated, info


class EndlessEnv(NanRewardEnv):
    """Never terminates and has no time limit of its own."""

    def step(self, action):
        obs, _, _, _, info = super().step(action)
        return obs, 1.0, False, False, info


class PixelChoiceEnv(gym.Env):
    """A user's own image environment, as gymnasium's convention has it: Box(0, 255, (H, W, 3), uint8).

    Each step shows a 3x3 patch, red or green, at a random place on black; action 0 is right for red, 1 for
    green. Reward +1 when right, -1 when wrong; 20 steps an episode, so random play scores about 0 and a
    policy that reads the colour from the pixels scores 20.
    """

    def __init__(self, size=10, length=20):
        self.size, self.length = size, length
        self.action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.t, self.colour = 0, 0

    def _obs(self):
        self.colour = int(self.np_random.integers(2))
        image = np.zeros((self.size, self.size, 3), np.uint8)
        row, col = self.np_random.integers(0, self.size - 2, 2)
        image[row:row + 3, col:col + 3, self.colour] = 255
        return image

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        reward = 1.0 if int(action) == self.colour else -1.0
        self.t += 1
        return self._obs(), reward, self.t >= self.length, False, {}


class DictChoiceEnv(PixelChoiceEnv):
    """A user's own Dict environment, MiniGrid's shape: an image, a direction and a text mission.

    The image shows a red or green patch (as PixelChoice-v0's); the direction, 0 or 1, says whether the colours'
    meaning is swapped: action 0 is right for red when the direction is 0 and for green when it is 1. Only a
    policy that reads both the pixels and the direction scores 20; either alone scores about 0. The mission is
    text the agent cannot take (dropped with a note).
    """

    def __init__(self, size=8, length=20):
        super().__init__(size, length)
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (size, size, 3), np.uint8),
            "direction": gym.spaces.Discrete(2),
            "mission": gym.spaces.Text(20, charset="abcdefghijklmnopqrstuvwxyz ")})
        self.direction = 0

    def _obs(self):
        image = super()._obs()
        self.direction = int(self.np_random.integers(2))
        return {"image": image, "direction": self.direction, "mission": "match the colour"}

    def step(self, action):
        reward = 1.0 if int(action) == self.colour ^ self.direction else -1.0
        obs, _, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, info


class SpaceEnv(gym.Env):
    """An environment with a given observation space (for the refusal tests): observations are samples."""

    def __init__(self, space):
        self.action_space = gym.spaces.Discrete(2)
        self.observation_space = space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, True, False, {}


gym.register("Counting-v0", entry_point=CountingEnv)
gym.register("CountingImage-v0", entry_point=CountingEnv, kwargs={"image": True, "length": 7})
gym.register("SlowFirstWorker-v0", entry_point=SlowFirstWorkerEnv, kwargs={"length": 20})
gym.register("NanReward-v0", entry_point=NanRewardEnv)
gym.register("Failing-v0", entry_point=FailingEnv)
gym.register("HugeObservation-v0", entry_point=HugeObservationEnv)
gym.register("WrongShapeOnce-v0", entry_point=WrongShapeOnceEnv)
gym.register("Endless-v0", entry_point=EndlessEnv, max_episode_steps=None)
gym.register("PixelChoice-v0", entry_point=PixelChoiceEnv)
gym.register("PixelChoiceLarge-v0", entry_point=PixelChoiceEnv, kwargs={"size": 40})
gym.register("PixelChoice84-v0", entry_point=PixelChoiceEnv, kwargs={"size": 84})  # Atari's frame size
gym.register("DictChoice-v0", entry_point=DictChoiceEnv)
gym.register("DictObs-v0", entry_point=SpaceEnv,
             kwargs={"space": gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)})})
gym.register("TupleObs-v0", entry_point=SpaceEnv,
             kwargs={"space": gym.spaces.Tuple((gym.spaces.Discrete(3), gym.spaces.Discrete(2)))})
# Every kind of part: a bool grid channels last, a Discrete with a start, a MultiDiscrete, a MultiBinary, a float Box.
gym.register("MixedSpaces-v0", entry_point=SpaceEnv, kwargs={"space": gym.spaces.Dict({
    "grid": gym.spaces.Box(0, 1, (5, 5, 2), bool), "level": gym.spaces.Discrete(3, start=1),
    "keys": gym.spaces.MultiDiscrete([2, 4]), "flags": gym.spaces.MultiBinary(3),
    "position": gym.spaces.Tuple((gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(2)))})})
gym.register("TextInDictObs-v0", entry_point=SpaceEnv, kwargs={"space": gym.spaces.Dict({"m": gym.spaces.Text(8)})})
gym.register("TextObs-v0", entry_point=SpaceEnv, kwargs={"space": gym.spaces.Text(8)})
gym.register("MinAtarLike-v0", entry_point=SpaceEnv, kwargs={"space": gym.spaces.Box(0, 1, (10, 10, 4), bool)})
gym.register("Float64Vector-v0", entry_point=SpaceEnv, kwargs={"space": gym.spaces.Box(-1, 1, (3,), np.float64)})


class FailingResetEnv(NanRewardEnv):
    """Raises from its first reset()."""

    def reset(self, *, seed=None, options=None):
        raise OSError("the simulator is not running")


gym.register("FailingReset-v0", entry_point=FailingResetEnv)


class ScaleReward(gym.RewardWrapper):
    """Rewards times ``factor``: a wrapper a test applies by name (env.wrappers) and recognises in the returns."""

    def __init__(self, env, factor: float = 1.0):
        super().__init__(env)
        self.factor = factor

    def reward(self, reward):
        return reward * self.factor
