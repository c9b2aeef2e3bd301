"""Learning-curve plots of run directories (matplotlib, no display needed)."""
from __future__ import annotations

import csv
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from . import metrics  # noqa: E402


def _read(path: str) -> dict[str, np.ndarray]:
    """The numeric columns of a metrics CSV as float arrays (empty cells NaN); text columns are left out."""
    if not os.path.exists(path):
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    columns = {}
    for key in rows[0]:
        try:
            columns[key] = np.array([float(r[key]) if r[key] not in ("", None) else np.nan for r in rows])
        except ValueError:
            continue
    return columns


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
        confirmed = evals.get("confirmed_mean_return")
        if confirmed is not None and not np.all(np.isnan(confirmed)):
            shown = ~np.isnan(confirmed)
            ax.plot(evals[metrics.ENV_STEPS][shown], confirmed[shown], "D", color="tab:red", ms=5,
                    label="its confirmation on other episodes (a candidate best or solve)")
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(os.path.basename(os.path.abspath(run_dir)))
    ax.grid(alpha=0.3)
    if episodes or evals:
        ax.legend(loc="best", fontsize=8)
    return _save(fig, path or os.path.join(run_dir, "learning_curve.png"))


def _save(fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def job_workers(run_dir: str) -> int:
    """How many workers wrote the run (mode dist: rank 0 here, the others under workers/); 1 otherwise."""
    workers_dir = os.path.join(run_dir, metrics.WORKERS_DIR)
    return 1 + (len(os.listdir(workers_dir)) if os.path.isdir(workers_dir) else 0)


def evaluation_curve(run_dir: str) -> dict[str, np.ndarray]:
    """A run's greedy evaluations: env steps, wall seconds and mean return per evaluation (empty if none), and
    the mean of each confirmation (``confirmed_mean_return``, NaN where there was none) where the run confirms.

    For a dist job rank 0 evaluates at its own env steps; every worker runs as many, so the job's env steps
    are those times the workers.
    """
    evals = _read(os.path.join(run_dir, metrics.EVAL_CSV))
    if not evals:
        return {}
    curve = {"env_steps": evals[metrics.ENV_STEPS] * job_workers(run_dir),
             "wall_seconds": evals[metrics.WALL_SECONDS], "mean_return": evals["mean_return"]}
    if "confirmed_mean_return" in evals:  # NaN where an evaluation was not confirmed (it was no candidate)
        curve["confirmed_mean_return"] = evals["confirmed_mean_return"]
    return curve


def grouped_curves(groups: dict[str, list[str]], x: str, path: str, title: str = "") -> str:
    """Mean (line) and min-max spread (band) over each group's runs of greedy return against ``x``.

    ``groups`` maps a label (a mode) to run directories (its seeds); ``x`` is ``env_steps`` or
    ``wall_seconds``. Each run's curve is interpolated onto a common grid that ends where its shortest run ends;
    a group of one run is drawn through its own evaluations.
    """
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for label, run_dirs in groups.items():
        curves = [c for c in (evaluation_curve(d) for d in run_dirs) if c and len(c[x]) >= 1]
        if not curves:
            continue
        if len(curves) == 1:
            grid = np.r_[0.0, curves[0][x]]
        else:
            end = min(c[x][-1] for c in curves)
            grid = np.linspace(0.0, end, 50) if end > 0 else np.zeros(1)
        values = np.array([np.interp(grid, np.r_[0.0, c[x]], np.r_[c["mean_return"][0], c["mean_return"]])
                           for c in curves])
        line, = ax.plot(grid, values.mean(axis=0), label=f"{label} ({len(curves)} run{'s' * (len(curves) > 1)})")
        if len(curves) > 1:
            ax.fill_between(grid, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("env steps" if x == "env_steps" else "wall-clock seconds of training")
    ax.set_ylabel("greedy evaluation return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def throughput_bars(rates: dict[str, list[float]], path: str, title: str = "") -> str:
    """Env steps per second per mode: median bar, each seed's run as a dot."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    labels = list(rates)
    ax.bar(labels, [float(np.median(rates[k])) for k in labels], color="tab:blue", alpha=0.7)
    for i, label in enumerate(labels):
        ax.plot([i] * len(rates[label]), rates[label], "k.", ms=6)
    ax.set_ylabel("env steps per second")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
