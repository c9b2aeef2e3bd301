"""The Pong training loop: gluon_pdqn against a bare MXNet script doing the same work, side by side.

Both: ALE Pong-v5 with the DQN preprocessing, 1 env, random acting until env step 1,000, then epsilon-greedy
through the network with epsilon 0.1 (constant, so both run the same forward passes: a step that explores runs
none, as in SB3's DQN), an update every 4 env steps (batch 32, Adam 1e-4, clip 10), the target
refreshed every 1,000 updates, replay of 10,000. Figure: env steps/s over the learning phase. Rows: plain and
double DQN in fp32 (ours against ``bare_dqn.pong_loop``); ours in bf16 where the CPU has it; ours with
``run.overlap_acting``; ours acting on 4 envs at once. Variants are interleaved over ``--repeats`` rounds and
medians reported.

Also the cost of one acting call (a greedy action for one observation, read back to numpy) on an idle learner.

    python benchmarks/pong_loop.py [--repeats 3] [--steps 3000]
"""
from __future__ import annotations

import csv
import os
import statistics
import tempfile
import time
import warnings

import click

import gluon_pdqn

gluon_pdqn.give_mxnet_every_core()  # before MXNet loads: the Nature CNN's kernels get every core
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from bare_dqn import BareDQN, pong_loop
from results_file import write_results

warnings.filterwarnings("ignore")

from gluon_pdqn import metrics  # noqa: E402
from gluon_pdqn.config import Config, load_preset  # noqa: E402
from gluon_pdqn.envs import EnvSpec  # noqa: E402
from gluon_pdqn.learners import SingleLearner  # noqa: E402
from gluon_pdqn.run.loop import Training  # noqa: E402
from gluon_pdqn.networks.precision import cpu_has_bf16  # noqa: E402

LEARNING_STARTS = 1_000


def pong_config(steps: int, double_q: bool, **overrides) -> Config:
    """The atari-modern preset set to the benchmark's shared settings."""
    return load_preset("atari-modern").replace({
        "env.id": "ALE/Pong-v5", "run.total_env_steps": steps, "replay.learning_starts": LEARNING_STARTS,
        "replay.capacity": 10_000, "replay.batch_size": 32, "optim.learning_rate": 1e-4,
        "optim.max_grad_norm": 10.0, "agent.train_every": 4, "agent.target_update_every": 1_000,
        "agent.double_q": double_q, "exploration.epsilon_start": 0.1, "exploration.epsilon_final": 0.1,
        "run.eval_every": 0,
        "run.checkpoint_every": 0, "run.log_every": 500, **overrides})


def ours_loop(cfg: Config, seed: int) -> dict:
    """Env steps/s and updates/s of our loop over its learning phase, from its own metrics.csv."""
    with tempfile.TemporaryDirectory() as run_dir:
        Training(cfg.replace({"run.seed": seed}), run_dir).run()
        with open(os.path.join(run_dir, "metrics.csv")) as f:
            rows = [r for r in csv.DictReader(f) if int(r[metrics.ENV_STEPS]) > LEARNING_STARTS]
    first, last = rows[0], rows[-1]  # the first row whose window lies wholly in the learning phase, and the last
    seconds = float(last[metrics.WALL_SECONDS]) - float(first[metrics.WALL_SECONDS])
    return {"env_steps_per_s": (int(last[metrics.ENV_STEPS]) - int(first[metrics.ENV_STEPS])) / seconds,
            "updates_per_s": (int(last[metrics.LEARNER_STEPS]) - int(first[metrics.LEARNER_STEPS])) / seconds}


def acting_ms(calls: int = 300) -> float:
    """Median ms of one greedy acting call (one observation in, Q-values read back) on an idle learner.

    Acting is fp32 in every ``run.precision`` (see ``networks.precision``), so one figure serves all rows.
    """
    spec = EnvSpec("ALE/Pong-v5", (4, 84, 84), np.dtype(np.uint8), (84, 84), 4, 6, True)
    learner = SingleLearner(pong_config(10, True), spec, mx.cpu(0))
    obs = np.random.default_rng(0).integers(0, 256, (1, 4, 84, 84), dtype=np.uint8)
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        learner.q_values(obs)
        samples.append(time.perf_counter() - start)
    return 1e3 * statistics.median(samples[20:])


@click.command()
@click.option("--repeats", default=3, show_default=True)
@click.option("--steps", default=3_000, show_default=True, help="Env steps per run (learning from 1,000).")
@click.option("--output", default=os.path.join(os.path.dirname(__file__), "results", "pong_loop.json"),
              show_default=True)
def main(repeats, steps, output):
    bf16 = cpu_has_bf16()
    variants = {
        "bare, plain DQN": lambda seed: pong_loop(BareDQN("adam", double_q=False), steps, seed=seed),
        "ours, plain DQN": lambda seed: ours_loop(pong_config(steps, False), seed),
        "bare, double DQN": lambda seed: pong_loop(BareDQN("adam", double_q=True), steps, seed=seed),
        "ours, double DQN": lambda seed: ours_loop(pong_config(steps, True), seed),
        "ours, plain DQN, overlap_acting": lambda seed: ours_loop(
            pong_config(steps, False, **{"run.overlap_acting": True}), seed),
        "ours, plain DQN, 4 envs": lambda seed: ours_loop(pong_config(steps, False, **{"env.num_envs": 4}), seed),
    }
    if bf16:
        variants["ours, plain DQN, bf16"] = lambda seed: ours_loop(
            pong_config(steps, False, **{"run.precision": "bf16"}), seed)
        variants["ours, double DQN, bf16"] = lambda seed: ours_loop(
            pong_config(steps, True, **{"run.precision": "bf16"}), seed)
    results = {"benchmark": "pong_loop", "steps": steps, "learning_starts": LEARNING_STARTS, "repeats": repeats,
               "load_average_before": os.getloadavg(), "bf16_available": bf16, "rows": []}
    samples = {name: [] for name in variants}
    for seed in range(repeats):
        for name, run in variants.items():
            samples[name].append(run(seed))
            click.echo(f"round {seed}, {name}: {samples[name][-1]['env_steps_per_s']:.1f} env steps/s", err=True)
    for name, runs in samples.items():
        row = {"variant": name, "env_steps_per_s": round(statistics.median(r["env_steps_per_s"] for r in runs), 2),
               "updates_per_s": round(statistics.median(r["updates_per_s"] for r in runs), 2),
               "samples": [round(r["env_steps_per_s"], 2) for r in runs]}
        results["rows"].append(row)
    by_name = {row["variant"]: row for row in results["rows"]}
    for kind in ("plain", "double"):
        results[f"ours_vs_bare_{kind}"] = round(by_name[f"ours, {kind} DQN"]["env_steps_per_s"]
                                                / by_name[f"bare, {kind} DQN"]["env_steps_per_s"], 3)
    results["acting_call_ms"] = round(acting_ms(), 3)
    for row in results["rows"]:
        click.echo(f"{row['variant']}: {row['env_steps_per_s']:.1f} env steps/s, {row['updates_per_s']:.1f} updates/s")
    click.echo(f"ours/bare: plain {results['ours_vs_bare_plain']:.2f}, double {results['ours_vs_bare_double']:.2f}; "
               f"one acting call: {results['acting_call_ms']} ms")
    write_results(results, output)


if __name__ == "__main__":
    main()
