"""The CartPole training loop: gluon_pdqn's cartpole preset against a bare MXNet script doing the same work.

Both: CartPole-v1, one env, the cartpole preset's schedule (random acting until 1,000 env steps, epsilon 1 to 0.04
over 8,000, 128 updates of batch 64 every 256 env steps, 3-step double-DQN targets, Adam 2.3e-3, clip 10, the
target refreshed every 128 updates, an MLP of 128 and 128), no evaluation, so the figure is the loop's own: env
steps/s from env step 1,000 to ``--steps``. Each run in a process of its own (MXNet's default threads), rounds
interleaved, medians and the median of per-round ratios reported.

    python benchmarks/cartpole_loop.py [--rounds 3] [--steps 20000]
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

import click

from results_file import run_rates, write_results

HERE = os.path.dirname(os.path.abspath(__file__))
LEARNING_STARTS = 1_000

BARE_DRIVER = r"""
import json, sys
from bare_dqn import BareDQN, cartpole_loop, mlp
agent = BareDQN("adam", double_q=True, network=mlp, obs_shape=(4,), obs_dtype="float32", n_actions=2,
                learning_rate=2.3e-3)
print(json.dumps(cartpole_loop(agent, int(sys.argv[1]), seed=int(sys.argv[2]))))
"""


def bare(steps: int, seed: int) -> dict:
    process = subprocess.run([sys.executable, "-c", BARE_DRIVER, str(steps), str(seed)], capture_output=True,
                             text=True, env={**os.environ, "PYTHONPATH": HERE}, stdin=subprocess.DEVNULL)
    if process.returncode != 0:
        sys.exit(f"the bare loop failed: {process.stderr.strip()}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def ours(steps: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = os.path.join(scratch, "run")
        process = subprocess.run([sys.executable, "-m", "gluon_pdqn.cli", "train", "--quiet", "--seed", str(seed),
                                  "--steps", str(steps), "--run-dir", run_dir, "--set", "run.eval_every=0",
                                  "--set", "run.stop_return=none", "--set", "run.checkpoint_every=0",
                                  "--set", "run.log_every=1000"], capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL)
        if process.returncode != 0:
            sys.exit(f"gluon-pdqn failed: {process.stderr.strip()}")
        return run_rates(run_dir, LEARNING_STARTS)


@click.command()
@click.option("--rounds", default=3, show_default=True)
@click.option("--steps", default=20_000, show_default=True, help="Env steps per run (measured from 1,000).")
@click.option("--output", default=os.path.join(HERE, "results", "cartpole_loop.json"), show_default=True)
def main(rounds, steps, output):
    contestants = {"ours": ours, "bare": bare}
    samples = {name: [] for name in contestants}
    results = {"benchmark": "cartpole_loop", "steps": steps, "learning_starts": LEARNING_STARTS, "rounds": rounds,
               "load_average_before": os.getloadavg(), "rows": []}
    for seed in range(rounds):
        for name, run in contestants.items():
            samples[name].append(run(steps, seed))
            click.echo(f"round {seed}, {name}: {samples[name][-1]['env_steps_per_s']:.1f} env steps/s", err=True)
    for name, runs in samples.items():
        results["rows"].append({"contestant": name,
                                "env_steps_per_s": round(statistics.median(r["env_steps_per_s"] for r in runs), 1),
                                "updates_per_s": round(statistics.median(r["updates_per_s"] for r in runs), 1),
                                "samples": [round(r["env_steps_per_s"], 1) for r in runs]})
    ratios = [a["env_steps_per_s"] / b["env_steps_per_s"] for a, b in zip(samples["ours"], samples["bare"])]
    results["ours_vs_bare"] = round(statistics.median(ratios), 3)
    results["ours_vs_bare_per_round"] = [round(r, 3) for r in ratios]
    for row in results["rows"]:
        click.echo(f"{row['contestant']}: {row['env_steps_per_s']:.1f} env steps/s (rounds {row['samples']})")
    click.echo(f"ours/bare: {results['ours_vs_bare']:.2f}")
    write_results(results, output)


if __name__ == "__main__":
    main()
