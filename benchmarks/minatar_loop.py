"""MinAtar's DQN loop: gluon_pdqn against the MinAtar authors' reference DQN and a bare MXNet script, side by side.

All three run the paper's DQN (Young & Tian 2019) on one MinAtar game: batch 32, centred RMSProp, replay start
5,000, one update per frame, the target refreshed every 1,000 updates. To measure at the acting rate of most of a
long run, epsilon reaches its final 0.1 by frame 10,000 (the paper: by frame 105,000) and env steps/s are measured
from frame 10,000 to ``--frames``. Each contestant runs in its own process as its users run it:

- ``reference``: ``examples/dqn.py`` of github.com/kenjyoung/MinAtar (PyTorch, GPL-3.0: not part of this
  repository; pass its path with ``--reference``, e.g. from a clone). Its module constants are set for the
  schedule above and its frame function is timed by a wrapper; its code runs unchanged. PyTorch's default threads
  (``--threads N``: N for every contestant).
- ``bare``: ``bare_dqn.minatar_loop``, the same work in plain MXNet/Gluon (MinAtar's own environment, a numpy
  replay), one MXNet thread.
- ``ours``: ``gluon-pdqn train --env MinAtar/<Game>-v1`` (the minatar preset, picked by the id), its own threads;
  the rate is read from its metrics.csv. Its RMSProp adds epsilon to the root as the reference's PyTorch does
  (MXNet has no kernel for it: a few of Adam's per parameter); ``ours_under_root`` is the same run with MXNet's
  own RMSProp kernel (epsilon under the root), the bare loop's optimizer, so that ours and bare do the same work.

Rounds are interleaved and medians reported, with the ratios of ours to each. Then, where the time of one of our
updates goes (``UPDATE_PARTS``, in a process of its own, one MXNet thread): the learner's update alone, back to
back (its throughput is what the loop can reach at most); the same forward, backward and RMSProp kernels with no
host read at all (MXNet's floor for this work); each part waited for; the preset's RMSProp step alone, and MXNet's
own RMSProp kernel on the same parameters; one acting call through MXNet and through the numpy copy that apex
actors use.

    python benchmarks/minatar_loop.py --reference PATH/TO/MinAtar/examples/dqn.py [--game breakout] [--rounds 3]
    python benchmarks/minatar_loop.py --reference PATH --threads 1 --contestants ours,reference --output OUT.json
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
MEASURE_FROM = 10_000  # frames: epsilon is at its final 0.1 from here in all three
GAMES = {"breakout": "Breakout", "space_invaders": "SpaceInvaders", "freeway": "Freeway", "asterix": "Asterix",
         "seaquest": "Seaquest"}  # MinAtar's names and the ids' names

# Runs the reference's module as its own main() would, with the schedule of this benchmark, and prints the rate.
REFERENCE_DRIVER = r"""
import importlib.util, json, sys, tempfile, time
path, game, frames, measure_from = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
spec = importlib.util.spec_from_file_location("minatar_reference_dqn", path)
dqn = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dqn)
dqn.NUM_FRAMES = frames
dqn.FIRST_N_FRAMES = measure_from - dqn.REPLAY_START_SIZE  # epsilon 0.1 from measure_from on
frame_function, marks = dqn.world_dynamics, {}
def timed(t, *args):
    if t == measure_from:
        marks["start"] = time.perf_counter()
    return frame_function(t, *args)
dqn.world_dynamics = timed
from minatar import Environment
import torch
with tempfile.TemporaryDirectory() as scratch:
    dqn.dqn(Environment(game), False, False, scratch + "/run")
seconds = time.perf_counter() - marks["start"]
print(json.dumps({"env_steps_per_s": (frames - measure_from) / seconds,
                  "updates_per_s": (frames - measure_from) / seconds, "torch_threads": torch.get_num_threads()}))
"""

BARE_DRIVER = r"""
import json, sys
from bare_dqn import BareDQN, minatar_loop, small_cnn
from minatar import Environment
game, frames, measure_from, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
env = Environment(game)
shape = env.state_shape()
agent = BareDQN("rmsprop", double_q=False, network=small_cnn, obs_shape=(shape[2], shape[0], shape[1]),
                obs_dtype="float32", n_actions=env.num_actions())
print(json.dumps(minatar_loop(agent, game, frames, decay_steps=measure_from, measure_from=measure_from, seed=seed)))
"""


UPDATE_PARTS = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import mxnet as mx, numpy as np
from mxnet import autograd
from gluon_pdqn import networks
from gluon_pdqn.config import load_preset
from gluon_pdqn.envs import describe
from gluon_pdqn.learners import SingleLearner
from gluon_pdqn.learners.optimizers import make_optimizer
from gluon_pdqn.learners.single import batch_inputs
from gluon_pdqn.replay import Batch

cfg = load_preset("minatar").replace({"env.id": sys.argv[1]})
spec = describe(cfg.env)
learner = SingleLearner(cfg, spec, mx.cpu(0))
rng = np.random.default_rng(0)
B = cfg.replay.batch_size
def batch():
    cells = lambda: (rng.integers(0, 2, (B,) + spec.obs_shape) * 255).astype(spec.obs_dtype)
    return Batch(obs=cells(), actions=rng.integers(0, spec.n_actions, B), rewards=rng.random(B).astype(np.float32),
                 next_obs=cells(), discounts=np.full(B, 0.99, np.float32), weights=np.ones(B, np.float32),
                 indices=np.arange(B))
batches = [batch() for _ in range(64)]
def ms(call, n=1500, wait_each=False):
    for i in range(100):
        call(i)
    mx.nd.waitall()
    start = time.perf_counter()
    for i in range(n):
        call(i)
        if wait_each:
            mx.nd.waitall()
    mx.nd.waitall()
    return round((time.perf_counter() - start) / n * 1e3, 3)
inputs = batch_inputs(batches[0], mx.cpu(0), B)
targets = learner.target_block(inputs[1], inputs[2])
def loss_and_backward(i):
    with autograd.record():
        losses, _, _ = learner.loss_block(inputs[0], inputs[2], targets)
    autograd.backward([losses])
gradients = learner.gradients
def no_read(i):
    learner.forward_backward(batches[i % 64])
    gradients.update()
def optimizer_step(outside):
    # One optimizer step over copies of the network's parameters: the preset's RMSProp, or MXNet's kernel.
    optimizer = make_optimizer(cfg.replace({"optim.rmsprop_epsilon_outside_root": outside}).optim)
    params = list(learner.online.collect_params().values())
    weights = [p.data().copy() for p in params]
    grads = [mx.nd.random.normal(scale=1e-3, shape=w.shape) for w in weights]
    states = [optimizer.create_state(k, w) for k, w in enumerate(weights)]
    if outside:  # it takes the Updater's lists of parameters; MXNet's takes one parameter a call
        return lambda i: optimizer.update(list(range(len(weights))), weights, grads, states)
    return lambda i: [optimizer.update(k, weights[k], grads[k], states[k]) for k in range(len(weights))]
obs = batches[0].obs[:1]
copy = networks.numpy_copy(learner.online)
copy.load(np.concatenate([p.data().asnumpy().ravel() for p in copy.parameters()]))
print(json.dumps({
    "update_ms": ms(lambda i: learner.step(batches[i % 64])),
    "update_without_host_read_ms": ms(no_read),
    "waited_target_forward_ms": ms(lambda i: learner.target_block(inputs[1], inputs[2]), wait_each=True),
    "waited_loss_forward_backward_ms": ms(loss_and_backward, wait_each=True),
    "waited_norm_and_clip_ms": ms(lambda i: gradients.norm_and_scale(), wait_each=True),
    "waited_update_ms": ms(lambda i: learner.step(batches[i % 64]), wait_each=True),
    "optimizer_ms": ms(optimizer_step(True)),
    "optimizer_mxnet_rmsprop_ms": ms(optimizer_step(False)),
    "acting_call_mxnet_ms": ms(lambda i: learner.q_values(obs)),
    "acting_call_numpy_copy_ms": ms(lambda i: copy(obs)),
}))
"""


def update_parts(game: str) -> dict:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return _last_json_line(subprocess.run([sys.executable, "-c", UPDATE_PARTS, f"MinAtar/{GAMES[game]}-v1"],
                                          capture_output=True, text=True, env=environment,
                                          stdin=subprocess.DEVNULL), "the update's parts")


def _last_json_line(process: subprocess.CompletedProcess, who: str) -> dict:
    if process.returncode != 0:
        sys.exit(f"{who} failed: {process.stderr.strip().splitlines()[-1] if process.stderr.strip() else '?'}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def _environment(threads: int | None) -> dict:
    """This process's environment with ``OMP_NUM_THREADS`` (MXNet's and PyTorch's kernel threads) set to
    ``threads``, or left to the framework's default when None."""
    environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    return environment if threads is None else {**environment, "OMP_NUM_THREADS": str(threads)}


def reference(path: str, game: str, frames: int, seed: int, threads: int | None = None) -> dict:
    environment = _environment(threads)
    return _last_json_line(subprocess.run([sys.executable, "-c", REFERENCE_DRIVER, path, game, str(frames),
                                           str(MEASURE_FROM)], capture_output=True, text=True, env=environment,
                                          stdin=subprocess.DEVNULL), "the reference DQN")


def bare(game: str, frames: int, seed: int, threads: int | None = None) -> dict:
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads or 1), "PYTHONPATH": HERE}
    return _last_json_line(subprocess.run([sys.executable, "-c", BARE_DRIVER, game, str(frames), str(MEASURE_FROM),
                                           str(seed)], capture_output=True, text=True, env=environment,
                                          stdin=subprocess.DEVNULL), "the bare MXNet loop")


def ours(game: str, frames: int, seed: int, sets: tuple[str, ...], threads: int | None = None) -> dict:
    environment = _environment(threads)
    env_id = GAMES[game]
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = os.path.join(scratch, "run")
        command = [sys.executable, "-m", "gluon_pdqn.cli", "train", "--quiet", "--env", f"MinAtar/{env_id}-v1",
                   "--seed", str(seed), "--steps", str(frames), "--run-dir", run_dir,
                   "--set", f"exploration.decay_steps={MEASURE_FROM}", "--set", "run.eval_every=0",
                   "--set", "run.checkpoint_every=0", "--set", "run.log_every=1000"]
        for setting in sets:
            command += ["--set", setting]
        process = subprocess.run(command, capture_output=True, text=True, env=environment, stdin=subprocess.DEVNULL)
        if process.returncode != 0:
            sys.exit(f"gluon-pdqn failed: {process.stderr.strip()}")
        return run_rates(run_dir, MEASURE_FROM)


@click.command()
@click.option("--reference", "reference_path", type=click.Path(exists=True, dir_okay=False),
              help="examples/dqn.py of kenjyoung/MinAtar (without it, the reference is left out).")
@click.option("--game", type=click.Choice(sorted(GAMES)), default="breakout", show_default=True)
@click.option("--frames", default=20_000, show_default=True, help="Frames per run (measured from 10,000).")
@click.option("--rounds", default=3, show_default=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Settings for our runs (a variant).")
@click.option("--output", default=os.path.join(HERE, "results", "minatar_loop.json"), show_default=True)
@click.option("--parts-only", is_flag=True, help="Measure only the update's parts, into the existing results file.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Kernel threads (OMP_NUM_THREADS) of every contestant (default: each its own: the reference "
                   "PyTorch's, ours MXNet's, the bare loop 1).")
@click.option("--contestants", default=None,
              help="Which to run, of ours,ours_under_root,bare,reference (default: all; the reference with "
                   "--reference).")
def main(reference_path, game, frames, rounds, sets, output, parts_only, threads, contestants):
    if parts_only:
        with open(output) as f:
            results = json.load(f)
        results["our_update_parts"] = update_parts(results["game"])
        click.echo(json.dumps(results["our_update_parts"]))
        write_results(results, output)
        return
    chosen = contestants.split(",") if contestants else ["ours", "ours_under_root", "bare", "reference"]
    if not contestants and not reference_path:
        chosen.remove("reference")
    unknown = set(chosen) - {"ours", "ours_under_root", "bare", "reference"}
    if unknown or ("reference" in chosen and not reference_path):
        raise click.UsageError(f"--contestants: unknown {', '.join(sorted(unknown))}" if unknown
                               else "--contestants reference needs --reference")
    contestants = {"ours": lambda seed: ours(game, frames, seed, sets, threads),
                   "ours_under_root": lambda seed: ours(game, frames, seed,
                                                        sets + ("optim.rmsprop_epsilon_outside_root=false",), threads),
                   "bare": lambda seed: bare(game, frames, seed, threads)}
    if reference_path:
        contestants["reference"] = lambda seed: reference(reference_path, game, frames, seed, threads)
    contestants = {name: run for name, run in contestants.items() if name in chosen}
    results = {"benchmark": "minatar_loop", "game": game, "frames": frames, "measured_from_frame": MEASURE_FROM,
               "rounds": rounds, "our_settings": list(sets), "threads": threads or "each its own",
               "load_average_before": os.getloadavg(),
               "cpu": _cpu_model(), "rows": []}
    samples = {name: [] for name in contestants}
    for seed in range(rounds):
        for name, run in contestants.items():
            samples[name].append(run(seed))
            click.echo(f"round {seed}, {name}: {samples[name][-1]['env_steps_per_s']:.1f} env steps/s", err=True)
    medians = {}
    for name, runs in samples.items():
        medians[name] = statistics.median(r["env_steps_per_s"] for r in runs)
        results["rows"].append({"contestant": name, "env_steps_per_s": round(medians[name], 1),
                                "samples": [round(r["env_steps_per_s"], 1) for r in runs]})
    pairs = [("ours", other) for other in contestants if other != "ours" and "ours" in contestants]
    pairs += [("ours_under_root", other) for other in ("bare", "reference")
              if other in contestants and "ours_under_root" in contestants]
    for mine, other in pairs:
        # Ratio per round (side by side), then the median: robust to the load drifting between rounds.
        ratios = [a["env_steps_per_s"] / b["env_steps_per_s"] for a, b in zip(samples[mine], samples[other])]
        results[f"{mine}_vs_{other}"] = round(statistics.median(ratios), 3)
        results[f"{mine}_vs_{other}_per_round"] = [round(r, 3) for r in ratios]
    results["our_update_parts"] = parts = update_parts(game)
    for row in results["rows"]:
        click.echo(f"{row['contestant']}: {row['env_steps_per_s']:.1f} env steps/s (rounds {row['samples']})")
    click.echo(", ".join(f"{mine}/{other}: {results[f'{mine}_vs_{other}']:.2f}" for mine, other in pairs))
    click.echo("our update's parts (ms): " + ", ".join(f"{k[:-3]} {v}" for k, v in parts.items()))
    write_results(results, output)


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")


if __name__ == "__main__":
    main()
