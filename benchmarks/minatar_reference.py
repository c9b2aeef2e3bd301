"""The MinAtar authors' reference DQN trained to a budget, its training returns written as our runs write them.

``examples/dqn.py`` of github.com/kenjyoung/MinAtar (PyTorch, GPL-3.0: not part of this repository; pass its
path, e.g. from a clone) is run as its own ``main()`` would, with its own constants, except ``NUM_FRAMES`` (the
budget), one torch thread (as each of our runs has one MXNet thread), and seeds for Python, numpy, torch and the
environment (the script seeds nothing). Every episode's return is appended to ``OUT/episodes.csv`` as it ends
(columns ``env_steps,return``, as in our run directories), so ``minatar_curves.py`` reads both alike and a run
cut short keeps what it did; ``OUT/summary.json`` gets the training return over the last 100 episodes at the
end. This is how a shortfall against the paper's curves is told apart: ours, or the game and its version.

``table`` puts runs side by side (the reference's and ours, finished or not): the training return over the last
100 episodes at each of ``--marks`` frames, printed and written to ``results/NAME.json``, the files of each run
from outside ``results/`` copied to ``results/NAME/<label>/``.

    python benchmarks/minatar_reference.py run PATH/TO/dqn.py --game Breakout --seed 0 --frames 1000000 --out DIR
    python benchmarks/minatar_reference.py table --name minatar_reference LABEL=DIR [LABEL=DIR ...]
"""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import random
import shutil
import time

import click
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
KEPT = ("episodes.csv", "summary.json", "eval.csv", "metrics.csv", "config.json")


@click.group()
def main():
    """The MinAtar authors' reference DQN: run it to a budget, or tabulate runs side by side."""


@main.command()
@click.argument("reference", type=click.Path(exists=True, dir_okay=False))
@click.option("--game", default="Breakout", show_default=True, help="MinAtar's game, by our id's name.")
@click.option("--seed", default=0, show_default=True)
@click.option("--frames", default=1_000_000, show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for episodes.csv.")
def run(reference, game, seed, frames, out):
    """Train the reference DQN at REFERENCE (its examples/dqn.py) and write its episodes to --out."""
    import torch
    from minatar import Environment

    os.makedirs(out, exist_ok=True)
    spec = importlib.util.spec_from_file_location("minatar_reference_dqn", reference)
    dqn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dqn)
    dqn.NUM_FRAMES = frames
    torch.set_num_threads(1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    env = Environment(game.lower().replace("spaceinvaders", "space_invaders"))
    env.seed(seed)

    episodes = open(os.path.join(out, "episodes.csv"), "w", newline="")
    writer = csv.writer(episodes)
    writer.writerow(["env_steps", "return", "wall_seconds"])
    returns: list[float] = []
    episode_return = [0.0]
    started = time.perf_counter()
    world_dynamics = dqn.world_dynamics

    def recorded(t, *args):
        """The reference's own step, with the episode's return kept and written when the episode ends."""
        s_prime, action, reward, terminated = world_dynamics(t, *args)
        episode_return[0] += float(reward.item())
        if bool(terminated.item()):
            returns.append(episode_return[0])
            writer.writerow([t + 1, episode_return[0], round(time.perf_counter() - started, 1)])
            episodes.flush()
            episode_return[0] = 0.0
        return s_prime, action, reward, terminated

    dqn.world_dynamics = recorded
    dqn.dqn(env, False, False, os.path.join(out, "reference"))
    episodes.close()
    summary = {"reference": "kenjyoung/MinAtar examples/dqn.py", "game": game, "seed": seed, "frames": frames,
               "episodes": len(returns), "wall_seconds": round(time.perf_counter() - started, 1),
               "training_return_last_100": round(float(np.mean(returns[-100:])), 3) if returns else None,
               "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    click.echo(json.dumps(summary))


def training_return_at(episodes_csv: str, frames: int, window: int = 100) -> float | None:
    """The mean return of the last ``window`` episodes that ended by ``frames`` (None before any ended, or when the
    run has not reached ``frames``)."""
    with open(episodes_csv) as f:
        rows = [(int(r["env_steps"]), float(r["return"])) for r in csv.DictReader(f)]
    if not rows or rows[-1][0] < frames * 0.99:
        return None
    returns = [value for steps, value in rows if steps <= frames][-window:]
    return round(float(np.mean(returns)), 2) if returns else None


@main.command()
@click.option("--name", default="minatar_reference", show_default=True, help="results/NAME.json and results/NAME/.")
@click.option("--marks", default="100000,200000,300000,500000,750000,1000000", show_default=True)
@click.argument("runs", nargs=-1, required=True)
def table(name, marks, runs):
    """Tabulate RUNS (LABEL=DIR, each with an episodes.csv) at --marks frames and keep their files."""
    from results_file import write_results

    marks = [int(m) for m in marks.split(",")]
    out_dir = os.path.join(HERE, "results", name)
    rows = []
    for entry in runs:
        label, _, directory = entry.partition("=")
        kept = os.path.abspath(directory)
        if not kept.startswith(os.path.join(HERE, "results") + os.sep):  # a run outside the results: keep it there
            kept = os.path.join(out_dir, label)
            os.makedirs(kept, exist_ok=True)
            for file in KEPT:
                if os.path.exists(os.path.join(directory, file)):
                    shutil.copy(os.path.join(directory, file), os.path.join(kept, file))
        with open(os.path.join(kept, "episodes.csv")) as f:
            reached = max(int(r["env_steps"]) for r in csv.DictReader(f))
        values = {str(m): training_return_at(os.path.join(kept, "episodes.csv"), m) for m in marks}
        rows.append({"run": label, "files": os.path.relpath(kept, HERE), "frames_reached": reached,
                     "training_return_last_100_episodes": values})
        click.echo(f"{label} (to {reached:,} frames): " + ", ".join(f"{int(m) // 1000}k {v}" for m, v in values.items()))
    write_results({"benchmark": "minatar_reference", "measure": "training return, mean of the last 100 episodes",
                   "marks": marks, "rows": rows, "load_average_before": os.getloadavg()},
                  os.path.join(HERE, "results", f"{name}.json"))


if __name__ == "__main__":
    main()
