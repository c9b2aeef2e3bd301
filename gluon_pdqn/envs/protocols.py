"""Evaluation protocols: how greedy evaluation episodes are played, so that scores can be compared.

Atari scores are comparable only under a named protocol (Machado et al. 2018, section 5). Two are offered
for ALE ids, both on the full game with raw (unclipped) scores:

- ``nature`` (Mnih et al. 2015): epsilon 0.05, up to 30 no-op actions at reset, episodes capped at 18,000
  emulator frames (5 minutes of play), no sticky actions.
- ``machado`` (Machado et al. 2018): sticky actions with probability 0.25 and no no-ops, episodes capped at
  108,000 frames (30 minutes); epsilon is the preset's ``exploration.eval_epsilon``.

``plain`` plays the environment as configured with ``exploration.eval_epsilon`` (every non-Atari id).
``auto`` picks ``nature`` for ALE ids and ``plain`` otherwise.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import EVAL_PROTOCOLS, Config, EnvConfig
from ..errors import UserError


@dataclass(frozen=True)
class EvalProtocol:
    """A resolved protocol: its name, the evaluation environment's settings and the acting epsilon."""

    name: str
    env: EnvConfig
    epsilon: float

    def describe(self) -> str:
        """One line naming what the protocol fixes (for the display and summary.json)."""
        if self.name == "plain":
            return f"plain (epsilon {self.epsilon:g}, the environment as configured)"
        frames = self.env.max_episode_frames
        return (f"{self.name} (epsilon {self.epsilon:g}, up to {self.env.noop_max} no-ops, sticky actions "
                f"{self.env.sticky_actions:g}, {frames:,} frames per episode, raw scores)")


def resolve(cfg: Config, is_atari: bool, protocol: str | None = None) -> EvalProtocol:
    """The protocol ``protocol`` (default: ``cfg.run.eval_protocol``) for the environment of ``cfg``."""
    name = protocol or cfg.run.eval_protocol
    if name not in EVAL_PROTOCOLS:
        raise UserError(f"unknown evaluation protocol '{name}'; available: {', '.join(EVAL_PROTOCOLS)}")
    if name == "auto":
        name = "nature" if is_atari else "plain"
    if name == "plain":
        return EvalProtocol("plain", cfg.env, cfg.exploration.eval_epsilon)
    if not is_atari:
        raise UserError(f"evaluation protocol '{name}' is for Atari (ALE) ids; {cfg.env.id} evaluates with "
                        "'plain' (or 'auto')")
    if name == "nature":
        env = dataclasses.replace(cfg.env, noop_max=30, sticky_actions=0.0, max_episode_frames=18_000)
        return EvalProtocol("nature", env, 0.05)
    env = dataclasses.replace(cfg.env, noop_max=0, sticky_actions=0.25, max_episode_frames=108_000)
    return EvalProtocol("machado", env, cfg.exploration.eval_epsilon)
