"""What subnormal floats cost, and what flushing them to zero (``gluon_pdqn.flush_denormals``) gives back.

An optimizer's state sinks into the subnormal range (below 1.2e-38) wherever a weight's gradient stays zero, and
x86 CPUs take about a hundred times longer over such operands. gluon_pdqn flushes them to zero from its import on;
``GLUON_PDQN_KEEP_DENORMALS=1`` keeps them, and each measurement below runs in a process of its own both ways,
rounds interleaved, one MXNet thread:

- ``kernels``: MXNet's ``adam_update`` and ``rmsprop_update`` over 131,072 weights (the MinAtar network's largest
  layer) with their state all normal and all subnormal (flushed, the subnormal state is zero from its creation);
- ``loop`` (with ``--checkpoint``): a run resumed from one of its checkpoints (replay included) for ``--steps`` env
  steps, evaluation and checkpoints off, env steps/s from its metrics.csv after the first 1,000; and the
  checkpoint's optimizer state counted (how many of its floats are subnormal).

    python benchmarks/subnormals.py [--rounds 3]
    python benchmarks/subnormals.py --checkpoint RUN/checkpoints/ckpt-000000500000 --steps 5000
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import click

from results_file import run_rates, write_results

HERE = os.path.dirname(os.path.abspath(__file__))

KERNELS = r"""
import json, time
import gluon_pdqn
import mxnet as mx, numpy as np
n, out = 131072, {"flushed": gluon_pdqn.DENORMALS_FLUSHED}
rng = np.random.default_rng(0)
weight = mx.nd.array(rng.standard_normal(n).astype(np.float32) * 0.01)
for state in ("normal", "subnormal"):
    tiny = state == "subnormal"
    grad = mx.nd.array(np.full(n, 1e-30, np.float32) if tiny else rng.standard_normal(n).astype(np.float32) * 1e-3)
    mean, var = mx.nd.zeros(n), mx.nd.full(n, 1e-42 if tiny else 1e-6)
    calls = {"adam_update": lambda: mx.nd.adam_update(weight, grad, mean, var, out=weight, lr=1e-4, epsilon=1e-8),
             "rmsprop_update": lambda: mx.nd.rmsprop_update(weight, grad, var, out=weight, lr=1e-4, epsilon=1e-8)}
    for name, call in calls.items():
        for _ in range(20):
            call()
        mx.nd.waitall()
        started = time.perf_counter()
        for _ in range(200):
            call()
        mx.nd.waitall()
        out[f"{name}_{state}_us"] = (time.perf_counter() - started) / 200 * 1e6
print(json.dumps(out))
"""


def _environment(keep: bool) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MXNET_CPU_WORKER_NTHREADS": "1",
            "GLUON_PDQN_KEEP_DENORMALS": "1" if keep else "0"}


def kernels(keep: bool) -> dict:
    done = subprocess.run([sys.executable, "-c", KERNELS], env=_environment(keep), capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def subnormal_count(checkpoint: str) -> dict:
    """Floats of the checkpoint's optimizer state and parameters, and how many of them are subnormal."""
    import mxnet as mx
    import numpy as np

    counts = {}
    for name in ("optimizer.params", "params.params"):
        loaded = mx.nd.load(os.path.join(checkpoint, name))
        # Read as raw bits: in this process subnormals are flushed, so a float comparison would see zeros.
        bits = [a.asnumpy().view(np.uint32) for a in (loaded.values() if isinstance(loaded, dict) else loaded)
                if a.dtype == np.float32]
        exponent_zero = sum(int(np.sum(((b >> 23) & 0xFF) == 0)) for b in bits)
        zero = sum(int(np.sum((b & 0x7FFFFFFF) == 0)) for b in bits)
        counts[name] = {"floats": sum(b.size for b in bits), "subnormal": exponent_zero - zero, "zero": zero}
    return counts


def loop(checkpoint: str, steps: int, keep: bool) -> dict:
    """Resume a copy of the checkpoint's run for ``steps`` env steps; its env steps/s."""
    with open(os.path.join(checkpoint, "state.json")) as f:
        start = int(json.load(f)["counters"]["env_steps"])
    run_dir = tempfile.mkdtemp(prefix="subnormals_")
    try:
        shutil.copy(os.path.join(checkpoint, "..", "..", "config.json"), run_dir)
        shutil.copytree(checkpoint, os.path.join(run_dir, "checkpoints", os.path.basename(checkpoint)))
        command = [sys.executable, "-m", "gluon_pdqn.cli", "train", "--quiet", "--resume", run_dir,
                   "--set", f"run.total_env_steps={start + steps}", "--set", "run.eval_every=0",
                   "--set", "run.checkpoint_every=0", "--set", "run.log_every=1000"]
        subprocess.run(command, env=_environment(keep), capture_output=True, text=True, check=True,
                       stdin=subprocess.DEVNULL)
        return run_rates(run_dir, start + 1000)  # from the first row: loading the replay is not timed
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


@click.command()
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--checkpoint", type=click.Path(exists=True, file_okay=False), default=None,
              help="A run's checkpoint (with its replay) to resume both ways.")
@click.option("--steps", type=click.IntRange(min=1000), default=5000, show_default=True,
              help="Env steps of each resumed run.")
@click.option("--output", default=os.path.join(HERE, "results", "subnormals.json"), show_default=True)
def main(rounds, checkpoint, steps, output):
    load_before = os.getloadavg()
    results: dict = {"rounds": rounds, "load_average_before": load_before, "kernels": {"flushed": [], "kept": []}}
    if checkpoint:
        results["checkpoint"] = os.path.abspath(checkpoint)
        results["checkpoint_counts"] = subnormal_count(checkpoint)
        results["loop"] = {"flushed": [], "kept": [], "steps": steps}
    for _ in range(rounds):
        for label, keep in (("flushed", False), ("kept", True)):
            results["kernels"][label].append(kernels(keep))
            if checkpoint:
                results["loop"][label].append(loop(checkpoint, steps, keep)["env_steps_per_s"])
    for name in ("adam_update", "rmsprop_update"):
        for state in ("normal", "subnormal"):
            key = f"{name}_{state}_us"
            flushed = statistics.median(r[key] for r in results["kernels"]["flushed"])
            kept = statistics.median(r[key] for r in results["kernels"]["kept"])
            click.echo(f"{name}, state {state}: {kept:.0f} us kept, {flushed:.0f} us flushed")
    if checkpoint:
        ratios = [f / k for f, k in zip(results["loop"]["flushed"], results["loop"]["kept"])]
        results["loop"]["flushed_over_kept"] = ratios
        results["loop"]["median_ratio"] = statistics.median(ratios)
        listed = ", ".join(f"{r:.2f}" for r in ratios)
        click.echo(f"resumed run: {statistics.median(results['loop']['flushed']):.1f} env steps/s flushed, "
                   f"{statistics.median(results['loop']['kept']):.1f} kept (ratios {listed}); "
                   f"optimizer state: {results['checkpoint_counts']['optimizer.params']}")
    write_results(results, output)


if __name__ == "__main__":
    main()
