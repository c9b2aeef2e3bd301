"""What waiting costs: updates that wait for the device, updates that do not, and acting overlapped with them.

Three variants of the same learner and loop, measured side by side (repeats interleaved, medians reported):

- ``wait``: every update waits for its gradient norm on the host (the clip and the skip of a non-finite
  step decided in Python), as MXNet's own optimizers need;
- ``no_wait``: Adam's update reads its clip factor from the device and skips a non-finite step there, so the
  Python thread runs ahead of the engine (the default with Adam);
- ``overlap``: ``no_wait`` plus ``run.overlap_acting``: the envs step with a policy snapshot taken at each
  training round while that round's updates are computed.

Figures: learner updates/s (cartpole MLP), and env steps/s of the whole training loop on CartPole (single
and data modes) and on Pong with the Nature CNN. Results go to stdout and benchmarks/results/overlap.json.

    python benchmarks/overlap.py [--repeats 3] [--contexts cpu:0,cpu:1]
"""
from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
import warnings

import click

from results_file import write_results
import numpy as np

warnings.filterwarnings("ignore")

from gluon_pdqn.config import Config, load_preset  # noqa: E402
from gluon_pdqn.envs import EnvSpec  # noqa: E402
from gluon_pdqn.build import make_learner  # noqa: E402
from gluon_pdqn.learners.single import Gradients  # noqa: E402
from gluon_pdqn.run.loop import Training  # noqa: E402
from gluon_pdqn.parallel import parse_contexts  # noqa: E402
from gluon_pdqn.replay import Batch  # noqa: E402

VARIANTS = ("wait", "no_wait", "overlap")
MLP = EnvSpec("CartPole-v1", (4,), np.dtype(np.float32), (4,), 1, 2, False)


class _Waiting:
    """Within the block, learners take the waiting path (host-side clip and skip) whatever the optimizer."""

    def __enter__(self):
        self._original = Gradients.skips_on_device
        Gradients.skips_on_device = lambda gradients: False

    def __exit__(self, *exc):
        Gradients.skips_on_device = self._original


def _variant(name: str):
    return _Waiting() if name == "wait" else contextlib.nullcontext()


def _batch(size: int) -> Batch:
    rng = np.random.default_rng(0)
    obs = lambda: rng.normal(size=(size, 4)).astype(np.float32)  # noqa: E731
    return Batch(obs(), rng.integers(0, 2, size).astype(np.int32), np.ones(size, np.float32), obs(),
                 np.full(size, 0.99, np.float32), np.ones(size, np.float32), np.arange(size))


def updates_per_second(variant: str, updates: int = 500) -> float:
    cfg = load_preset("cartpole")
    with _variant(variant):
        learner = make_learner(cfg, MLP, parse_contexts("cpu:0"))
        batch = _batch(cfg.replay.batch_size)
        for _ in range(20):
            learner.step(batch)
        learner.q_values(batch.obs[:1])
        start = time.perf_counter()
        for _ in range(updates):
            learner.step(batch)
        learner.q_values(batch.obs[:1])  # a read: queued work is finished before the clock stops
        return updates / (time.perf_counter() - start)


def loop_env_steps_per_second(variant: str, cfg: Config, seed: int) -> float:
    cfg = cfg.replace({"run.overlap_acting": variant == "overlap", "run.seed": seed, "run.eval_every": 0,
                       "run.stop_return": None, "run.checkpoint_every": 0})
    with _variant(variant), tempfile.TemporaryDirectory() as run_dir:
        summary = Training(cfg, run_dir).run()
    counters = summary.counters  # the whole run, its random-acting warm-up (replay.learning_starts) included
    return counters["env_steps"] / counters["wall_seconds"]


@click.command()
@click.option("--repeats", default=3, show_default=True)
@click.option("--contexts", default="cpu:0,cpu:1", show_default=True, help="Devices of the data-mode case.")
@click.option("--cartpole-steps", default=10_000, show_default=True)
@click.option("--pong-steps", default=600, show_default=True)
@click.option("--output", default=os.path.join(os.path.dirname(__file__), "results", "overlap.json"),
              show_default=True)
def main(repeats, contexts, cartpole_steps, pong_steps, output):
    cartpole = load_preset("cartpole").replace({"run.total_env_steps": cartpole_steps})
    pong = load_preset("atari-nature").replace({"env.id": "ALE/Pong-v5", "run.total_env_steps": pong_steps,
                                                 "replay.learning_starts": 100, "replay.capacity": 10_000,
                                                 "optim.name": "adam", "optim.learning_rate": 1e-4})
    cases = {
        "mlp learner updates/s": lambda variant, seed: updates_per_second(variant),
        f"CartPole loop env steps/s, single, {cartpole_steps} steps":
            lambda variant, seed: loop_env_steps_per_second(variant, cartpole, seed),
        f"CartPole loop env steps/s, data on {contexts}, {cartpole_steps} steps":
            lambda variant, seed: loop_env_steps_per_second(
                variant, cartpole.replace({"run.mode": "data", "run.ctx": contexts}), seed),
        f"Pong loop env steps/s, Nature CNN, Adam, single, {pong_steps} steps":
            lambda variant, seed: loop_env_steps_per_second(variant, pong, seed),
    }
    results = {"repeats": repeats, "cpu_count": os.cpu_count(), "load_average_before": os.getloadavg(),
               "cases": []}
    for name, measure in cases.items():
        samples = {variant: [] for variant in VARIANTS}
        for seed in range(repeats):  # variants interleaved, so drifting load hits all of them alike
            for variant in VARIANTS:
                samples[variant].append(measure(variant, seed))
        row = {"case": name, **{v: statistics.median(s) for v, s in samples.items()},
               "samples": samples}
        for variant in VARIANTS[1:]:
            row[f"{variant}_vs_wait"] = round(row[variant] / row["wait"], 3)
        results["cases"].append(row)
        click.echo(f"{name}: " + ", ".join(f"{v} {row[v]:.1f}" for v in VARIANTS)
                   + f"  (no_wait/wait {row['no_wait_vs_wait']:.2f}, overlap/wait {row['overlap_vs_wait']:.2f})")
    write_results(results, output)


if __name__ == "__main__":
    main()
