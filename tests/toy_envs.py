"""Small environments for tests, registered on import (used as `toy_envs:Name-v0`)."""
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


gym.register("Counting-v0", entry_point=CountingEnv)
gym.register("CountingImage-v0", entry_point=CountingEnv, kwargs={"image": True, "length": 7})
gym.register("NanReward-v0", entry_point=NanRewardEnv)
gym.register("Failing-v0", entry_point=FailingEnv)
