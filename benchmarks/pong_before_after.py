"""Our Pong loop, this checkout against an earlier commit, side by side in one run.

For a change to the training loop: is the pixel loop slower? Each round runs, for each tree (an earlier commit
checked out into a temporary git worktree, and this checkout), pong_loop.py's settings for our loop (ALE
Pong-v5, 3,000 env steps, learning from 1,000, an update every 4, batch 32, Adam, plain DQN, fp32), alternating
trees so that the machine's load falls on both alike. Reported: env steps/s over the learning phase per round,
the ratio after/before per round and its median. Written to benchmarks/results/pong_before_after.json.

    python benchmarks/pong_before_after.py --before f707941 [--rounds 3]
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile

import click

from results_file import write_results

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# Run inside each tree (its own gluon_pdqn on PYTHONPATH): the loop of either layout (run/loop.py after the
# redesign, loops.py before), pong_loop.py's settings, env steps/s of the learning phase printed last.
ONE_RUN = r'''
import csv, os, sys, tempfile
import gluon_pdqn
gluon_pdqn.give_mxnet_every_core()
from gluon_pdqn.config import load_preset
try:
    from gluon_pdqn.run.loop import Training
except ImportError:
    from gluon_pdqn.loops import Training
cfg = load_preset("atari-modern").replace({
    "env.id": "ALE/Pong-v5", "run.total_env_steps": 3000, "replay.learning_starts": 1000,
    "replay.capacity": 10_000, "replay.batch_size": 32, "optim.learning_rate": 1e-4,
    "optim.max_grad_norm": 10.0, "agent.train_every": 4, "agent.target_update_every": 1_000,
    "agent.double_q": False, "exploration.epsilon_start": 0.1, "exploration.epsilon_final": 0.1,
    "run.eval_every": 0, "run.checkpoint_every": 0, "run.log_every": 500, "run.seed": int(sys.argv[1])})
with tempfile.TemporaryDirectory() as run_dir:
    Training(cfg, run_dir).run()
    rows = [r for r in csv.DictReader(open(os.path.join(run_dir, "metrics.csv"))) if int(r["env_steps"]) > 1000]
first, last = rows[0], rows[-1]
print((int(last["env_steps"]) - int(first["env_steps"])) / (float(last["wall_seconds"]) - float(first["wall_seconds"])))
'''


def _rate(tree: str, seed: int) -> float:
    result = subprocess.run([sys.executable, "-c", ONE_RUN, str(seed)], cwd=tree, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": tree}, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        sys.exit(f"{tree} seed {seed} failed: {result.stderr.strip()[-500:]}")
    return float(result.stdout.split()[-1])


@click.command()
@click.option("--before", required=True, help="The earlier commit (any git revision).")
@click.option("--rounds", default=3, show_default=True)
def main(before, rounds):
    load_before = os.getloadavg()
    revision = subprocess.run(["git", "rev-parse", "--short", before], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    now = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        old_tree = os.path.join(scratch, "before")
        subprocess.run(["git", "worktree", "add", "--detach", old_tree, revision], cwd=REPO, check=True,
                       capture_output=True)
        try:
            for seed in range(rounds):
                row = {"seed": seed, "before": _rate(old_tree, seed), "after": _rate(REPO, seed)}
                row["after_over_before"] = row["after"] / row["before"]
                rows.append(row)
                click.echo(f"round {seed}: before {row['before']:.1f}, after {row['after']:.1f} env steps/s "
                           f"({row['after_over_before']:.3f})")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", old_tree], cwd=REPO, capture_output=True)
    results = {"benchmark": "pong_before_after", "before": revision, "after": now, "load_average_before": load_before,
               "rounds": rows, "median_after_over_before": statistics.median(r["after_over_before"] for r in rows)}
    click.echo(f"median after/before: {results['median_after_over_before']:.3f}")
    write_results(results, os.path.join(HERE, "results", "pong_before_after.json"))


if __name__ == "__main__":
    main()
