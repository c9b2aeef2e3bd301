"""The peers' algorithms on one MinAtar game, as Revisiting Rainbow (Obando-Ceron & Castro 2021) compares them.

Every variant starts from the `minatar-rainbow` preset (Revisiting Rainbow's MinAtar settings: Adam, one update
per 4 frames, learning from 1,000 frames, the target every 1,000 frames) and switches pieces off:

- ``rainbow``: the preset as it is (C51 on [-100, 100], noisy nets, dueling, double DQN, prioritized replay,
  3-step returns, Adam 1e-4);
- ``c51`` and ``qr-dqn``: the return distribution alone (51 atoms; 51 quantiles), epsilon-greedy (1 to 0.01 over
  250k frames), uniform replay, 1-step returns, Adam 1e-4;
- ``dqn``: the same without the distribution, Huber loss, Adam 2.5e-4 (Revisiting Rainbow's DQN config);
- on request, Rainbow less one piece: ``rainbow-epsilon-greedy`` (no noisy nets: epsilon 1 to 0.01 over 250k
  frames), ``rainbow-uniform-replay`` (no prioritized replay), ``rainbow-one-step`` (1-step returns),
  ``rainbow-no-dueling`` and ``rainbow-no-double`` (the target network picks a* itself).

Each run is ``gluon-pdqn train --preset minatar-rainbow --env MinAtar/<Game>-v1 --seed S --steps N --set ...`` as a
user types it (``--version v0``: the ids with all 6 actions, which Revisiting Rainbow played), one MXNet thread per
run, ``--parallel`` runs at a time; runs that finished are kept and one with checkpoints is resumed, so the same
command continues the set in another session (``--collect`` only gathers). The `minatar` preset's DQN (the MinAtar
paper's settings, one update per frame) on the same game is drawn beside them from ``--paper-dqn-runs`` (the runs
of ``minatar_curves.py --name minatar_1m``), with the paper's value.

Results, NAME being ``minatar_algorithms_<game>`` unless ``--name`` says otherwise: ``benchmarks/results/NAME/``
(each run's files; ``curves.png``: the training return over the last 100 episodes against frames and the
evaluation against wall-clock seconds, mean and min-max over seeds) and ``benchmarks/results/NAME.json`` (per
variant and seed: the training return over the last 100 episodes at the end, the paper's measure, the final and
best evaluation, seconds; the median over seeds).

    python benchmarks/minatar_algorithms.py --game Breakout --seeds 0,1,2 --steps 1000000 --version v0 \\
        --paper-dqn-runs benchmarks/results/minatar_1m_breakout_v0
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile

import click
import numpy as np

from minatar_curves import PAPER_DQN_1M, copy_run, finished_run, job, run_row, run_sets, training_curve
from results_file import write_results

DISTRIBUTION_ALONE = ("network.noisy=false", "network.dueling=false", "agent.double_q=false",
                      "replay.prioritized=false", "replay.n_step=1")
VARIANTS = {
    "rainbow": (),
    "c51": DISTRIBUTION_ALONE,
    "qr-dqn": DISTRIBUTION_ALONE + ("agent.algo=qr-dqn",),
    "dqn": DISTRIBUTION_ALONE + ("agent.algo=dqn", "optim.loss=huber", "optim.learning_rate=2.5e-4"),
}
# Rainbow with one piece switched off, to find which of them holds it (``--variants rainbow-epsilon-greedy,...``).
ABLATIONS = {
    "rainbow-epsilon-greedy": ("network.noisy=false",),  # the preset's epsilon schedule instead of noisy nets
    "rainbow-uniform-replay": ("replay.prioritized=false",),
    "rainbow-one-step": ("replay.n_step=1",),
    "rainbow-no-dueling": ("network.dueling=false",),
    "rainbow-no-double": ("agent.double_q=false",),
}
PRESET = "minatar-rainbow"


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _summary(rows: list[dict]) -> dict:
    """The runs' rows and their medians over seeds."""
    return {"runs": rows,
            "median_training_return_last_100_episodes": _median([r["training_return_last_100_episodes"] for r in rows]),
            "median_final_eval_mean": _median([r["final_eval_mean"] for r in rows]),
            "median_seconds": _median([r["seconds"] for r in rows])}


def _env_id(run_dir: str) -> str:
    """The environment id a run was started with."""
    with open(os.path.join(run_dir, "config.json")) as f:
        return json.load(f)["env"]["id"]


def _band(ax, curves: list[dict], x: str, y: str, label: str, color: str) -> None:
    """Mean over ``curves`` (line) and their min-max (band) on a grid where every curve has values."""
    curves = [c for c in curves if c]
    if not curves:
        return
    start, end = max(c[x][0] for c in curves), min(c[x][-1] for c in curves)
    grid = np.linspace(start, end, 80)
    values = np.array([np.interp(grid, c[x], c[y]) for c in curves])
    ax.plot(grid, values.mean(axis=0), color=color, label=f"{label} ({len(curves)} seed{'s' * (len(curves) != 1)})")
    ax.fill_between(grid, values.min(axis=0), values.max(axis=0), color=color, alpha=0.15)


def plot(game: str, runs: dict[str, list[str]], path: str, steps: int, version: str) -> None:
    from gluon_pdqn.plots import evaluation_curve, plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.4), dpi=100)
    for (label, run_dirs), color in zip(runs.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        trainings = [training_curve(d) for d in run_dirs]
        _band(left, [{"env_steps": c["env_steps"], "mean_return": c["mean_return"]} for c in trainings if c],
              "env_steps", "mean_return", label, color)
        _band(right, [evaluation_curve(d) for d in run_dirs], "wall_seconds", "mean_return", label, color)
    if game in PAPER_DQN_1M and steps >= 500_000:
        left.plot([1_000_000], [PAPER_DQN_1M[game]], marker="*", markersize=12, color="black", linestyle="none",
                  label="the MinAtar paper's DQN at 1M frames (30 seeds)")
    left.set(xlabel="frames (env steps)", ylabel="training return, last 100 episodes",
             title=f"MinAtar/{game}-{version}: training return (the papers' measure)")
    right.set(xlabel="wall-clock seconds of training (one MXNet thread each, on a shared machine)",
              ylabel="evaluation return",
              title="evaluation, 10 episodes (epsilon 0.001; the minatar preset's 0.01)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    # One legend for both panels (same runs, same colours), below them: inside, it would hide the curves.
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.15, 1, 1))
    fig.savefig(path)
    plt.close(fig)


@click.command()
@click.option("--game", default="Breakout", show_default=True, help="MinAtar game (MinAtar/<GAME>-<version>).")
@click.option("--variants", default=",".join(VARIANTS), show_default=True,
              help=f"Which of them to run (also: {', '.join(ABLATIONS)}).")
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=1_000_000, show_default=True, help="Frames per run.")
@click.option("--parallel", type=click.IntRange(min=1), default=2, show_default=True, help="Runs at a time.")
@click.option("--version", type=click.Choice(["v1", "v0"]), default="v1", show_default=True,
              help="MinAtar's ids: v1 with the game's minimal action set, v0 with all 6 (Revisiting Rainbow's).")
@click.option("--scratch", default=None, help="Where the runs live [default: /tmp/gluon_pdqn_NAME].")
@click.option("--name", default=None, help="The set of runs: results/NAME/ and NAME.json [default: "
              "minatar_algorithms_GAME, with _v0 for --version v0].")
@click.option("--collect", is_flag=True, help="Start no run: gather those of the set that finished.")
@click.option("--paper-dqn-runs", type=click.Path(file_okay=False), default=None,
              help="Runs of the minatar preset on the game (<Game>-s<S>/) to draw and report beside.")
def main(game, variants, seeds, steps, parallel, version, scratch, name, collect, paper_dqn_runs):
    variants, seeds = variants.split(","), [int(s) for s in seeds.split(",")]
    settings = {**VARIANTS, **ABLATIONS}
    unknown = sorted(set(variants) - set(settings))
    if unknown:
        raise click.UsageError(f"unknown variants {unknown}; known: {', '.join(settings)}")
    results_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    name = name or f"minatar_algorithms_{game.lower()}" + ("_v0" if version == "v0" else "")
    out_dir = os.path.join(results_dir, name)
    scratch = scratch or os.path.join(tempfile.gettempdir(), f"gluon_pdqn_{name}")
    load_before = os.getloadavg()
    # Seeds first: the first seed of every variant finishes before the second of any.
    jobs = [job(f"MinAtar/{game}-{version}", s, steps, scratch, f"{v}-{game}-s{s}", settings[v], preset=PRESET)
            for s in seeds for v in variants]
    finished = run_sets(jobs, out_dir, parallel, collect)
    runs = {v: [finished[f"{v}-{game}-s{s}"] for s in seeds if f"{v}-{game}-s{s}" in finished] for v in variants}
    table = {}
    for variant, run_dirs in runs.items():
        for run_dir in run_dirs:
            copy_run(run_dir, out_dir)
        table[variant] = {"settings": list(settings[variant]), **_summary([run_row(d) for d in run_dirs])}
    drawn = {f"{v} (minatar-rainbow footing)": d for v, d in runs.items() if d}
    if paper_dqn_runs:
        paper_dirs = [os.path.join(paper_dqn_runs, f"{game}-s{s}") for s in seeds]
        paper_dirs = [d for d in paper_dirs if finished_run(d)]
        other = [d for d in paper_dirs if _env_id(d) != f"MinAtar/{game}-{version}"]
        if other:  # on Breakout the action sets differ by 1.7 at 1M frames: not the same game to compare on
            raise click.UsageError(f"--paper-dqn-runs: {other[0]} played {_env_id(other[0])}, not "
                                   f"MinAtar/{game}-{version} (--version)")
        table["dqn, minatar preset"] = {"source": os.path.relpath(paper_dqn_runs, results_dir),
                                        **_summary([run_row(d) for d in paper_dirs])}
        drawn["dqn, minatar preset (the MinAtar paper's settings, one update per frame)"] = paper_dirs
    for variant, entry in table.items():
        click.echo(f"{variant}: training return (last 100 episodes) median "
                   f"{entry['median_training_return_last_100_episodes']}, final greedy median "
                   f"{entry['median_final_eval_mean']} over {len(entry['runs'])} seeds")
    if any(drawn.values()):
        os.makedirs(out_dir, exist_ok=True)
        plot(game, drawn, os.path.join(out_dir, "curves.png"), steps, version)
    write_results({"game": f"MinAtar/{game}-{version}", "preset": PRESET, "steps_per_run": steps, "variants": table,
                   "paper_dqn_training_return_at_1M_frames": PAPER_DQN_1M.get(game), "parallel_runs": parallel,
                   "mxnet_threads_per_run": 1, "load_average_before": load_before},
                  os.path.join(results_dir, f"{name}.json"))


if __name__ == "__main__":
    main()
