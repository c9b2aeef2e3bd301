"""The Atari pipeline of DQN: training (episodic life, clipped rewards) and evaluation (the full game)."""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from ..config import EnvConfig

FRAME_STACK = 4
SCREEN_SIZE = 84


class EpisodicLife(gym.Wrapper):
    """A lost life ends the training episode; the emulator is reset only when the game is over.

    Mnih et al. (2015) used this to make value estimates see the cost of a lost life. Evaluation uses the
    full game instead.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._lives = 0
        self._game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self._lives:
            terminated = True
        self._lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self._game_over:
            obs, info = self.env.reset(**kwargs)
        else:
            # A no-op step moves past the life-loss frame without resetting the game.
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self._game_over = False
        self._lives = self.env.unwrapped.ale.lives()
        return obs, info


class FireReset(gym.Wrapper):
    """Press FIRE after reset, for games that wait for it to start (Breakout and others)."""

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        return obs, info


def make_atari(cfg: EnvConfig, *, evaluation: bool, render_mode: str | None = None) -> gym.Env:
    """``cfg.id`` with the DQN pipeline: no-op reset, frame skip with max-pooling, 84x84 grayscale, stack 4.

    Training adds episodic life and reward clipping (as configured); evaluation plays the full game and
    reports raw scores. Sticky actions apply to both when ``cfg.sticky_actions`` > 0.
    """
    frame_cap = {"max_num_frames_per_episode": cfg.max_episode_frames} if cfg.max_episode_frames else {}
    env = gym.make(cfg.id, frameskip=1, repeat_action_probability=cfg.sticky_actions,
                   full_action_space=False, render_mode=render_mode, **frame_cap)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=cfg.noop_max, frame_skip=cfg.frame_skip,
                                          screen_size=SCREEN_SIZE, grayscale_obs=True, scale_obs=False,
                                          terminal_on_life_loss=False)
    if not evaluation and cfg.episodic_life:
        env = EpisodicLife(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireReset(env)
    if not evaluation and cfg.clip_rewards:
        env = gym.wrappers.TransformReward(env, lambda r: float(np.sign(r)))
    return gym.wrappers.FrameStackObservation(env, FRAME_STACK, padding_type="reset")
