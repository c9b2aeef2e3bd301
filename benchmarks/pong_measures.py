"""Pong on the peers' measure beside ours: the return of training episodes next to greedy evaluation.

CleanRL and Dopamine report the return of training episodes (epsilon-greedy, the run's own exploration); our Pong
target was the Nature protocol's greedy evaluation (epsilon 0.05, up to 30 no-ops), which is harsher. This reads
committed Pong runs (their episodes.csv, eval.csv, metrics.csv; nothing is trained) and reports for each: where the
mean of the last ``--window`` training episodes first reached 0 and 18 (env steps and hours of training), its value
at 2M, 3M and 4M env steps, and the best greedy evaluation. ``pong_measures.png`` draws both measures against env
steps with the peers' published points: CleanRL's DQN (about 0 at 2M env steps, 17 at 3M, 19.5 at 4M; its
benchmark report) and Dopamine's DQN baseline (-1.5 at 2M agent steps). Env steps here are agent steps (4 frames).

    python benchmarks/pong_measures.py [--runs pong_solve_apex_per,pong_solve_apex,pong_solve] [--window 20]
"""
from __future__ import annotations

import csv
import os

import click
import numpy as np

from results_file import write_results

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
CLEANRL_DQN = [(2_000_000, 0.0), (3_000_000, 17.0), (4_000_000, 19.5)]  # (env steps, training return)
DOPAMINE_DQN = [(2_000_000, -1.5)]


def _columns(path: str, names: list[str]) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {name: np.array([float(r[name]) for r in rows]) for name in names}


def training_measure(run_dir: str, window: int) -> dict:
    """The mean of the last ``window`` training episodes after each episode, by env steps and by hours."""
    episodes = _columns(os.path.join(run_dir, "episodes.csv"), ["env_steps", "return"])
    rows = _columns(os.path.join(run_dir, "metrics.csv"), ["env_steps", "wall_seconds"])
    means = np.convolve(episodes["return"], np.ones(window) / window, mode="valid")
    steps = episodes["env_steps"][window - 1:]
    hours = np.interp(steps, rows["env_steps"], rows["wall_seconds"]) / 3600.0
    return {"env_steps": steps, "hours": hours, "mean": means}


def first_reaching(curve: dict, value: float) -> dict | None:
    hits = np.flatnonzero(curve["mean"] >= value)
    if not len(hits):
        return None
    return {"env_steps": int(curve["env_steps"][hits[0]]), "hours": round(float(curve["hours"][hits[0]]), 2)}


def at(curve: dict, env_steps: int) -> float | None:
    """The training measure at ``env_steps`` (the last episode before it), None past the run's end."""
    index = np.searchsorted(curve["env_steps"], env_steps, side="right") - 1
    if index < 0 or env_steps > curve["env_steps"][-1]:
        return None
    return round(float(curve["mean"][index]), 1)


@click.command()
@click.option("--runs", default="pong_solve_apex_per,pong_solve_apex,pong_solve", show_default=True,
              help="Run directories under benchmarks/results/.")
@click.option("--window", default=20, show_default=True, help="Training episodes averaged.")
def main(runs, window):
    from gluon_pdqn.plots import plt

    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    table = {}
    for name in runs.split(","):
        run_dir = os.path.join(RESULTS, name)
        curve = training_measure(run_dir, window)
        evals = _columns(os.path.join(run_dir, "eval.csv"), ["env_steps", "wall_seconds", "mean_return"])
        best = int(np.argmax(evals["mean_return"]))
        table[name] = {
            "training_return_reaches_0": first_reaching(curve, 0.0),
            "training_return_reaches_18": first_reaching(curve, 18.0),
            "training_return_at": {f"{m}M": at(curve, m * 1_000_000) for m in (2, 3, 4)},
            "best_training_return": round(float(curve["mean"].max()), 1),
            "best_greedy_evaluation": {"mean_return": float(evals["mean_return"][best]),
                                       "env_steps": int(evals["env_steps"][best]),
                                       "hours": round(float(evals["wall_seconds"][best]) / 3600.0, 2)},
            "env_steps": int(curve["env_steps"][-1]),
        }
        line, = ax.plot(curve["env_steps"], curve["mean"], linewidth=1.2,
                        label=f"{name}: training return (mean of the last {window} episodes)")
        ax.plot(evals["env_steps"], evals["mean_return"], "o--", ms=3, color=line.get_color(), alpha=0.7,
                label=f"{name}: greedy evaluation (Nature protocol, 10 episodes)")
        click.echo(f"{name}: training return reaches 0 at {table[name]['training_return_reaches_0']}, 18 at "
                   f"{table[name]['training_return_reaches_18']}; at 2M/3M/4M {table[name]['training_return_at']}; "
                   f"best greedy {table[name]['best_greedy_evaluation']}")
    ax.plot(*zip(*CLEANRL_DQN), "k*", ms=11, label="CleanRL DQN (training return, its report)")
    ax.plot(*zip(*DOPAMINE_DQN), "kP", ms=10, label="Dopamine DQN baseline (training return)")
    ax.axhline(18, color="gray", linestyle=":", linewidth=1)
    ax.set_xlabel("env steps (agent steps, 4 frames each)")
    ax.set_ylabel("return")
    ax.set_title("ALE/Pong-v5: the peers' measure (training return) beside greedy evaluation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "pong_measures.png"))
    plt.close(fig)
    write_results({"benchmark": "pong_measures", "window": window, "runs": table,
                   "cleanrl_dqn_training_return": CLEANRL_DQN, "dopamine_dqn_training_return": DOPAMINE_DQN,
                   "load_average_before": os.getloadavg()}, os.path.join(RESULTS, "pong_measures.json"))


if __name__ == "__main__":
    main()
