"""Learning-curve plots of run directories (matplotlib, no display needed)."""
from __future__ import annotations

import csv
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from . import logging as metrics  # noqa: E402


def _read(path: str) -> dict[str, np.ndarray]:
    if not os.path.exists(path):
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows]) for k in rows[0]}


def learning_curve(run_dir: str, path: str | None = None) -> str:
    """Plot a run's training-episode returns (and their running mean) and evaluation means against env steps."""
    episodes = _read(os.path.join(run_dir, metrics.EPISODES_CSV))
    evals = _read(os.path.join(run_dir, metrics.EVAL_CSV))
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if episodes:
        steps, returns = episodes[metrics.ENV_STEPS], episodes["return"]
        ax.plot(steps, returns, ".", ms=2, alpha=0.3, color="tab:blue", label="training episode")
        width = max(1, min(20, len(returns) // 10))
        if len(returns) >= width:
            smooth = np.convolve(returns, np.ones(width) / width, mode="valid")
            ax.plot(steps[width - 1:], smooth, color="tab:blue", label=f"running mean of {width}")
    if evals:
        ax.errorbar(evals[metrics.ENV_STEPS], evals["mean_return"], yerr=evals["std_return"], fmt="o-",
                    color="tab:orange", ms=4, capsize=2, label="greedy evaluation (mean, std)")
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(os.path.basename(os.path.abspath(run_dir)))
    ax.grid(alpha=0.3)
    if episodes or evals:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path = path or os.path.join(run_dir, "learning_curve.png")
    fig.savefig(path)
    plt.close(fig)
    return path
