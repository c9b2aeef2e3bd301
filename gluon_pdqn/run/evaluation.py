"""Evaluation episodes: a policy played in parallel environments, and their report (eval.csv, the display)."""
from __future__ import annotations

import numpy as np

from .. import envs, metrics
from ..acting import environment_call
from ..exploration import action_rng, epsilon_greedy

MAX_EVAL_ENVS = 16


def evaluate(greedy_values, env_cfg, n_actions: int, episodes: int, epsilon: float, seed: int,
             interrupted=lambda: False) -> np.ndarray | None:
    """Returns of ``episodes`` evaluation episodes (the full game for Atari), played in parallel envs.

    ``greedy_values(obs)`` gives the values the policy maximizes (``Learner.greedy_values``).

    ``env_cfg`` and ``epsilon`` come from an evaluation protocol (``envs.protocols.resolve``). Each
    environment plays a fixed share of the episodes, so short episodes are not over-represented. Returns
    None as soon as ``interrupted()`` is true (it is asked before every step).
    """
    num_envs = min(episodes, MAX_EVAL_ENVS)
    quota = np.full(num_envs, episodes // num_envs) + (np.arange(num_envs) < episodes % num_envs)
    vector_env = envs.make_vector_env(env_cfg, num_envs, evaluation=True)
    rng = action_rng(seed)
    try:
        obs, _ = environment_call(env_cfg.id, "evaluation", vector_env.reset, seed=seed)
        running = np.zeros(num_envs)
        finished: list[list[float]] = [[] for _ in range(num_envs)]
        resetting = np.zeros(num_envs, dtype=bool)
        while any(len(f) < q for f, q in zip(finished, quota)):
            if interrupted():
                return None
            actions = epsilon_greedy(lambda: greedy_values(obs), epsilon, n_actions, rng, num_envs)
            obs, rewards, terminated, truncated, _ = environment_call(env_cfg.id, "evaluation", vector_env.step,
                                                                      actions)
            running += np.where(resetting, 0.0, rewards)
            done = (terminated | truncated) & ~resetting
            for i in np.flatnonzero(done):
                if len(finished[i]) < quota[i]:
                    finished[i].append(float(running[i]))
                running[i] = 0.0
            resetting = done
        return np.array([r for f in finished for r in f])
    finally:
        vector_env.close()


def report_evaluation(returns: np.ndarray, counters, writer: metrics.MetricsWriter,
                      display: metrics.ProgressDisplay, protocol: str, confirmation: np.ndarray | None = None) -> None:
    """Log an evaluation's returns (eval.csv, TensorBoard, a line on the display), with the returns of its
    confirmation on other episodes where there was one."""
    mean = float(returns.mean())
    row = {metrics.ENV_STEPS: counters.env_steps, metrics.LEARNER_STEPS: counters.learner_steps,
           metrics.WALL_SECONDS: round(counters.wall_seconds, 3),
           "mean_return": mean, "median_return": float(np.median(returns)),
           "min_return": float(returns.min()), "max_return": float(returns.max()),
           "std_return": float(returns.std()), "episodes": len(returns), "protocol": protocol}
    line = (f"eval at {counters.env_steps:,} env steps: mean {mean:.1f}, "
            f"median {np.median(returns):.1f}, min {returns.min():.1f}, max {returns.max():.1f}")
    if confirmation is not None:
        row.update(confirmed_mean_return=float(confirmation.mean()), confirmed_episodes=len(confirmation))
        line += f"; confirmed on {len(confirmation)} other episodes: mean {confirmation.mean():.1f}"
    writer.evaluation(row)
    display.message(line)
