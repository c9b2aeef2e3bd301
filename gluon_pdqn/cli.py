"""The ``gluon-pdqn`` command line: a thin adapter from options to a Config and the library's entry points."""
from __future__ import annotations

import json
import os
import platform
import signal
import sys
import threading

import click

from . import __version__, build, checkpoint, give_mxnet_every_core
from .metrics import ProgressDisplay
from .run import directory
from .parallel.launcher import STALL_SECONDS, HorovodJob, Job, JobFailed, ProgressReports, is_launched_worker
from .config import (ASYNC_ALGOS, COLLECTORS, EVAL_PROTOCOLS, KVSTORES, MODES, PLACEMENTS, REPLAY_ALGOS, Config,
                     load_preset, mode_pair, preset_names)
from .errors import EnvironmentFault, StorageFault, TrainingStopped, UserError

def _parse_sets(pairs: tuple[str, ...]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set takes key=value, got '{pair}'")
        overrides[key.strip()] = value.strip()
    return overrides


def _check_writable_file(path: str, option: str) -> None:
    """Refuse, before any work, an output file whose directory does not exist or cannot be written."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError(f"{option} {path} is a directory; name a file")
    if not os.path.isdir(directory):
        raise UserError(f"{option} {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise UserError(f"{option} {path}: directory {directory} is not writable")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gluon-pdqn")
def cli():
    """Train Deep Q-Networks in parallel on Apache MXNet/Gluon."""


def _choose_mxnet_threads(cfg: Config) -> None:
    """Give MXNet every core when the run's network is a CNN over large frames; leave MXNet's default for MLPs
    and the small CNN (see ``gluon_pdqn.give_mxnet_every_core``, which says why). Must run before MXNet loads."""
    from . import envs
    from .architecture import uses_every_core

    if uses_every_core(cfg.network, envs.describe(cfg.env)):
        give_mxnet_every_core()


@cli.command()
@click.option("--preset", help=f"Preset name ({', '.join(preset_names())}) or a .toml file [default: by --env: "
              "minatar for MinAtar ids, atari-cpu for ALE ids, cartpole otherwise; with --mode async: async, or "
              "async-a3c for --algo a3c].")
@click.option("--env", "env_id", help="Gymnasium id, `module:Name-v0`, or an Atari id such as ALE/Pong-v5.")
@click.option("--mode", type=click.Choice(MODES), help="Parallelism mode: one device; data parallel (batch "
              "split over the --ctx devices); model parallel (network stages on the --ctx devices); an ensemble "
              "(one network per --ctx device); apex (--actors processes feeding one replay, any --learner); async "
              "actor-learners (--actors, --algo, --actor-backend); dist (a job of several processes, see launch: "
              "a parameter-server job, or allreduce with --learner horovod).")
@click.option("--learner", type=click.Choice(PLACEMENTS), help="How the learner is placed, if not as the mode's "
              "own: e.g. --mode apex --learner data (apex actors, a data-parallel learner over --ctx).")
@click.option("--collector", type=click.Choice(COLLECTORS), help="Who acts, if not the mode's own: vector (the "
              "in-process vector env), apex (actor processes feeding one replay), async (actors handing in "
              "rollouts).")
@click.option("--ctx", help="MXNet devices: cpu:0, gpu:0, gpu:0-3, gpu:0,gpu:2 (cpu:0,cpu:1 stand in for two).")
@click.option("--kvstore", type=click.Choice(KVSTORES),
              help="How --mode data sums gradients across devices (device, local, nccl), or how --mode dist "
                   "meets on the servers (dist_sync, the default there, or dist_async).")
@click.option("--actors", type=click.IntRange(min=1), help="Modes apex and async: number of actors.")
@click.option("--algo", type=click.Choice(REPLAY_ALGOS + ASYNC_ALGOS),
              help="What is learned: dqn, c51 or qr-dqn in the replay modes (agent.algo); one-step-q, n-step-q or "
                   "a3c in mode async (actors.algo).")
@click.option("--actor-backend", type=click.Choice(["thread", "process"]),
              help="Mode async: actors as threads of this process or as processes.")
@click.option("--seed", type=click.IntRange(min=0), help="Seed of environments, exploration, replay and initialization.")
@click.option("--steps", type=click.IntRange(min=1), help="Env steps to train for (in total, when resuming).")
@click.option("--num-envs", type=click.IntRange(min=1), help="Environments stepped together.")
@click.option("--run-dir", type=click.Path(), help="Directory for this run (default: runs/<env>-<mode>-s<seed>-<time>).")
@click.option("--resume", "resume_path", type=click.Path(),
              help="Continue the run in this run directory or checkpoint.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override any setting, e.g. --set replay.capacity=100000 (repeatable).")
@click.option("--quiet", is_flag=True, help="No progress display.")
def train(preset, env_id, mode, learner, collector, ctx, kvstore, actors, algo, actor_backend, seed, steps, num_envs, run_dir,
          resume_path, sets, quiet):
    """Train a DQN agent (with no options: CartPole-v1 on cpu:0, until solved)."""
    if kvstore is None and not resume_path:  # a resumed run keeps its kvstore (the pair's default, when it began)
        given = _parse_sets(sets)
        kvstore = build.default_kvstore(mode, collector or given.get("run.collector"),
                                        learner or given.get("run.learner"))
    options = {"env.id": env_id, "run.mode": mode, "run.learner": learner, "run.collector": collector, "run.ctx": ctx, "run.kvstore": kvstore, "run.seed": seed,
               "run.total_env_steps": steps, "env.num_envs": num_envs, "actors.count": actors,
               "actors.algo" if algo in ASYNC_ALGOS else "agent.algo": algo, "actors.backend": actor_backend}
    overrides = {k: v for k, v in options.items() if v is not None}
    overrides.update(_parse_sets(sets))
    if resume_path:
        run = directory.resume(resume_path, overrides)
    else:
        if preset is None:
            preset = build.default_preset(mode, algo, env_id, overrides)
            if env_id and not quiet:
                click.echo(f"preset {preset} (the default for {env_id}; --preset chooses another)")
        run = directory.create(load_preset(preset).replace(overrides), run_dir)
    cfg, bundle, run_dir = run.cfg, run.bundle, run.path
    display = ProgressDisplay(enabled=not quiet)
    try:
        _choose_mxnet_threads(cfg)
        from . import plots
        from .run.loop import Training  # after the choice: it loads MXNet

        training = Training(cfg, run_dir, resume_bundle=bundle, display=display)
    except BaseException:
        run.discard()
        raise
    run_dir = training.run_dir  # a dist worker other than rank 0 writes under workers/rank-R/
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        f.write(cfg.to_json())
    verb = f"resuming from {bundle}" if bundle else "training"
    display.message(f"{verb}: {cfg.env.id}, {build.describe(cfg)} on {cfg.run.ctx}, seed {cfg.run.seed}; run directory {run_dir}")
    reports = ProgressReports(training) if ProgressReports.wanted() else None  # to the job's launcher
    try:
        summary = training.run()
    finally:
        if reports is not None:
            reports.close()
        display.close()  # end the status line, so any error message starts a line of its own
    plots.learning_curve(run_dir)
    for note in summary.notes:
        display.message(f"note: {note}")
    c = summary.counters
    if summary.interrupted_by:
        click.echo(f"interrupted by {summary.interrupted_by} at {c['env_steps']:,} env steps; checkpoint "
                   f"{summary.checkpoint}; continue with: gluon-pdqn train --resume {run_dir}")
        return 128 + int(getattr(signal, summary.interrupted_by))
    share = " of this worker" if build.is_job(cfg) else ""  # a dist job's workers each count their own
    if summary.solved_at_env_steps is not None:
        confirmed = (f" (confirmed on {cfg.run.confirm_episodes} more episodes: {summary.best_eval_mean:.1f})"
                     if cfg.run.confirm_episodes else "")
        click.echo(f"solved: greedy mean return {summary.last_eval_mean:.1f}{confirmed} >= {cfg.run.stop_return:g} "
                   f"after {summary.solved_at_env_steps:,} env steps{share}, {summary.solved_at_seconds:.1f} s")
    else:
        last = f"{summary.last_eval_mean:.1f}" if summary.last_eval_mean is not None else "-"
        click.echo(f"finished {c['env_steps']:,} env steps{share}, {c['learner_steps']:,} updates in "
                   f"{c['wall_seconds']:.1f} s; last greedy mean return {last}")
    click.echo(f"run directory: {run_dir} (learning_curve.png, metrics.csv, checkpoints/)")
    return 0


@cli.command()
@click.argument("path", type=click.Path())
@click.option("--episodes", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--checkpoint", "which", default="last", show_default=True,
              help="Which bundle of a run directory: `last` (the newest: what the run ended with and a resume "
                   "continues from), `best` (the best greedy evaluation's policy), or a bundle's path.")
@click.option("--protocol", type=click.Choice(EVAL_PROTOCOLS), help="Evaluation protocol (default: the run's "
              "run.eval_protocol): nature or machado for Atari ids, plain for the env as configured.")
@click.option("--epsilon", type=click.FloatRange(0, 1), help="Exploration during evaluation (default: the "
              "protocol's).")
@click.option("--seed", type=click.IntRange(min=0), default=12345, show_default=True)
@click.option("--ctx", default="cpu:0", show_default=True, help="Device to run the network on.")
@click.option("--video", type=click.Path(dir_okay=False), help="Write the first episode as an animated GIF.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def evaluate(path, which, protocol, episodes, epsilon, seed, ctx, video, as_json):
    """Play EPISODES episodes with a trained agent (a run directory or a checkpoint) and report raw returns."""
    import numpy as np

    from . import envs
    from .run.evaluation import evaluate as play
    from .envs import protocols
    from .build import load_policy
    from .parallel import parse_contexts

    if video:
        _check_writable_file(video, "--video")
    bundle = checkpoint.resolve(path, which) if which in ("best", "last") else checkpoint.resolve(which)
    cfg = checkpoint.config_of(bundle)
    spec = envs.describe(cfg.env)
    chosen = protocols.resolve(cfg, spec.is_atari, protocol)
    devices = parse_contexts(ctx)
    learner = load_policy(bundle, cfg, spec, devices)
    eps = chosen.epsilon if epsilon is None else epsilon
    with learner.without_noise():  # a noisy network is evaluated by its means
        returns = play(learner.greedy_values, chosen.env, spec.n_actions, episodes, eps, seed)
    result = {"checkpoint": bundle, "env": cfg.env.id, "protocol": chosen.name, "episodes": episodes, "epsilon": eps,
              "mean": float(returns.mean()), "median": float(np.median(returns)), "min": float(returns.min()),
              "max": float(returns.max()), "std": float(returns.std()), "returns": returns.tolist()}
    if video:
        with learner.without_noise():
            result["video"] = _record_gif(learner, chosen.env, spec, eps, seed, video)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"{bundle}: {cfg.env.id}, protocol {chosen.name}, {episodes} episodes, epsilon {eps:g}: "
                   f"mean {result['mean']:.2f}  "
                   f"median {result['median']:.2f}  min {result['min']:.2f}  max {result['max']:.2f}  "
                   f"std {result['std']:.2f}")
        if video:
            click.echo(f"video: {video}")
    return 0


def _record_gif(learner, env_cfg, spec, epsilon, seed, path, max_frames=3000) -> str:
    from PIL import Image

    from . import envs
    from .exploration import action_rng, epsilon_greedy

    import gymnasium as gym

    env = envs.make_env(env_cfg, evaluation=True, render_mode="rgb_array")
    rng = action_rng(seed)
    frames = []
    try:
        obs, _ = env.reset(seed=seed)
        done = False
        while not done and len(frames) < max_frames:
            frames.append(Image.fromarray(env.render()))
            action = epsilon_greedy(lambda: learner.greedy_values(obs[None]), epsilon, spec.n_actions, rng, 1)[0]
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    except gym.error.Error as e:
        raise UserError(f"cannot render {env_cfg.id} for --video: {e}") from None
    finally:
        env.close()
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=33, loop=0)
    return path


@cli.command()
@click.option("--env", "env_id", default="CartPole-v1", show_default=True, help="Environment of every run.")
@click.option("--modes", default="single,data,model,ensemble,async", show_default=True,
              help=f"Comma-separated modes ({', '.join(MODES)}; dist runs as a job of 2 workers and 1 server, "
                   "dist:horovod as 2 Horovod ranks), each optionally MODE[:LEARNER][@ACTORS]: apex:data@4 is apex "
                   "with a data-parallel learner and 4 actors.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Seeds 0..N-1 per mode.")
@click.option("--budget-steps", type=click.IntRange(min=1), help="Env steps per run.")
@click.option("--budget-seconds", type=click.FloatRange(min=1), help="Seconds of training per run.")
@click.option("--preset", default="cartpole", show_default=True, help="Preset of the replay modes.")
@click.option("--async-preset", default="async", show_default=True, help="Preset of mode async.")
@click.option("--ctx", default="cpu:0,cpu:1", show_default=True,
              help="Devices of data, model and ensemble; single and async use the first.")
@click.option("--eval-every", type=click.IntRange(min=1), help="Env steps between greedy evaluations "
              "[default: a 25th of --budget-steps, at least 1,000; 5,000 with --budget-seconds].")
@click.option("--threshold", type=float, help="Return to time the runs to [default: the preset's stop return].")
@click.option("--out", "out_dir", type=click.Path(), help="Results directory [default: compare/<env>-<time>]; "
              "give an existing one to continue it.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="A setting for every run (repeatable).")
def compare(env_id, modes, seeds, budget_steps, budget_seconds, preset, async_preset, ctx, eval_every, threshold,
            out_dir, sets):
    """Run every mode on the same environment, seeds and budget, one after another; write a table and plots."""
    from . import compare as comparison

    if (budget_steps is None) == (budget_seconds is None):
        raise UserError("give exactly one of --budget-steps and --budget-seconds")
    chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
    if not chosen:
        raise UserError(f"--modes names no mode; available: {', '.join(MODES)}")
    for spec in chosen:
        comparison.parse_spec(spec)
    _parse_sets(sets)
    load_preset(preset), load_preset(async_preset)  # bad presets fail here, not in the first run
    if eval_every is None:
        eval_every = max(1_000, budget_steps // 25) if budget_steps is not None else 5_000
    plan = comparison.Plan(env=env_id, modes=chosen, seeds=tuple(range(seeds)), budget_steps=budget_steps,
                           budget_seconds=budget_seconds, preset=preset, async_preset=async_preset, ctx=ctx,
                           eval_every=eval_every,
                           threshold=threshold if threshold is not None else comparison.default_threshold(preset),
                           sets=tuple(sets))
    if out_dir is None:
        out_dir = os.path.join("compare", f"{directory.slug(env_id)}-{directory.now_stamp()}")
    try:
        results = comparison.run_comparison(plan, out_dir, echo=click.echo)
    except KeyboardInterrupt:
        click.echo(f"interrupted; continue with the same command and --out {out_dir}", err=True)
        return 130
    with open(os.path.join(out_dir, "table.md")) as f:
        click.echo(f.read())
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        first = failed[0]
        raise TrainingStopped(f"{len(failed)} of {len(results)} runs failed (the first, {first['mode']} seed "
                              f"{first['seed']}: {first['error'] or 'no message'}); the table has the others; "
                              f"run the same command to retry the failed ones")
    click.echo(f"results: {out_dir} (table.md, results.json, results.csv, return_vs_env_steps.png, "
               "return_vs_seconds.png, throughput.png)")
    return 0


@cli.command()
@click.argument("path", type=click.Path())
@click.option("--checkpoint", "which", default="best", show_default=True,
              help="Which bundle of a run directory: `best` (the best greedy evaluation's policy: what you deploy; "
                   "`last` where the run never evaluated), `last`, or a bundle's path.")
@click.option("--format", "formats", type=click.Choice(["mxnet", "onnx", "both"]), default="both", show_default=True,
              help="MXNet's symbol + params (load with SymbolBlock.imports), ONNX, or both.")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Directory for the exported files.")
def export(path, which, formats, out_dir):
    """Export the greedy Q-network of PATH (a run directory or a checkpoint) for deployment.

    Writes qnetwork-symbol.json and qnetwork-0000.params (MXNet), qnetwork.onnx (ONNX), and preprocessing.json:
    what the observations must look like (shape, dtype, frame stacking, the Atari pipeline) and what comes out.
    """
    from . import export as exporting

    if which in ("best", "last"):
        try:
            bundle = checkpoint.resolve(path, which)
        except UserError:
            if which != "best" or checkpoint.is_bundle(path):
                raise
            bundle = checkpoint.resolve(path, "last")  # a run that never evaluated has no best policy
    else:
        bundle = checkpoint.resolve(which)
    chosen = ("mxnet", "onnx") if formats == "both" else (formats,)
    written = exporting.export(bundle, out_dir, chosen)
    click.echo(f"exported {bundle}:")
    for kind, file in written.items():
        click.echo(f"  {kind}: {file}")
    return 0


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_path", default="curves.png", show_default=True, help="PNG file to write.")
@click.option("--x", "x_axis", type=click.Choice(["env_steps", "wall_seconds"]), default="env_steps",
              show_default=True)
@click.option("--title", default="", help="The plot's title.")
def plot(run_dirs, out_path, x_axis, title):
    """Greedy-return curves of RUN_DIRS, grouped by environment and mode (mean and min-max over each group's
    runs). A RUN_DIR written LABEL=RUN_DIR joins the group LABEL instead: `plot DQN=runs/a Rainbow=runs/b`."""
    from . import plots

    _check_writable_file(out_path, "--out")
    groups: dict[str, list[str]] = {}
    for argument in run_dirs:
        label, named, run_dir = argument.partition("=")
        if not named or os.path.isdir(argument):
            label, run_dir = None, argument
        try:
            with open(os.path.join(run_dir, "config.json")) as f:
                config = json.load(f)
        except (OSError, json.JSONDecodeError):
            raise UserError(f"{run_dir} is not a run directory (no readable config.json)") from None
        if not plots.evaluation_curve(run_dir):
            raise UserError(f"{run_dir} has no evaluations (eval.csv) to plot")
        groups.setdefault(label or f"{config['env']['id']} {config['run']['mode']}", []).append(run_dir)
    plots.grouped_curves(groups, x_axis, out_path, title)
    click.echo(f"wrote {out_path}")
    return 0


def _job_pair(command: tuple[str, ...]):
    """The pair of collector and learner placement a ``train`` COMMAND of ``launch`` runs (from the resumed run's
    settings with --resume), or None when it is not a train command of a job."""
    from .config import from_dict, pair_of

    if not command or command[0] != "train":
        return None
    try:
        with train.make_context("train", list(command[1:]), resilient_parsing=True) as context:
            given = context.params
    except click.ClickException:
        return None
    sets = dict(pair.partition("=")[::2] for pair in given.get("sets") or ())
    if given.get("resume_path"):
        path = given["resume_path"]
        run_dir = checkpoint.run_dir_of(path) if checkpoint.is_bundle(path) else path
        try:
            with open(os.path.join(run_dir, "config.json")) as f:
                return pair_of(from_dict(json.load(f)).run)
        except (OSError, ValueError, KeyError, UserError):
            return None  # the workers say what is wrong with it
    mode = given.get("mode") or sets.get("run.mode")
    if mode not in MODES:
        return None
    return mode_pair(mode, given.get("learner") or sets.get("run.learner"),
                     given.get("collector") or sets.get("run.collector"))


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Worker processes (with --learner horovod: the Horovod ranks).")
@click.option("--servers", type=click.IntRange(min=1), help="Parameter servers [default: 1; a Horovod job has none].")
@click.option("--launcher", type=click.Choice(["local", "ssh", "slurm", "mpi"]), default="local", show_default=True,
              help="How the processes are started: here, over ssh on the hosts of -H, through srun or mpirun "
              "(parameter-server jobs).")
@click.option("-H", "--hostfile", type=click.Path(), help="ssh, mpi: hosts for servers and workers, one per line.")
@click.option("--interface", help="Listen on this network interface instead of loopback (a private network only).")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=0, help="Port of the scheduler (or of the "
              "Horovod rendezvous) [default: a free one].")
@click.option("--deadline", type=click.FloatRange(min=0), default=0.0, help="End the job as failed after this many "
              "seconds [default: no deadline].")
@click.option("--stall-timeout", type=click.FloatRange(min=0), default=STALL_SECONDS, show_default=True,
              help="End the job as failed when a worker reports no progress (env steps, updates, evaluation "
              "steps) for this many seconds, start-up included; 0: never.")
@click.option("--ssh-config", type=click.Path(), help="ssh, mpi: the ssh client configuration (ssh -F FILE).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def launch(workers, servers, launcher, hostfile, interface, port, deadline, stall_timeout, ssh_config, command):
    """Start a job of several processes running COMMAND (train --mode dist ...): a parameter-server job
    (scheduler, servers and workers), or with --learner horovod a Horovod job (its ranks, and the rendezvous
    in this process)."""
    pair = _job_pair(command)
    if pair is None or not pair.is_job:
        raise UserError("launch runs: gluon-pdqn launch [options] -- train --mode dist [--learner horovod] [train "
                        "options] (or -- train --resume RUN_DIR to continue a dist run)")
    horovod = not pair.uses_servers  # a job without servers: Horovod ranks
    if horovod and servers is not None:
        raise UserError("a Horovod job has no servers (its ranks allreduce among themselves): leave out --servers")
    hosts = None
    if hostfile:
        try:
            with open(hostfile) as f:
                hosts = [line.split()[0] for line in f if line.strip() and not line.startswith("#")]
        except OSError as e:
            raise UserError(f"cannot read hostfile {hostfile}: {e.strerror}") from None
    # The job's time stamp (one run directory for all workers), and what the user set for ps-lite, MXNet and
    # Horovod here (PS_VERBOSE, MXNET_*, HOROVOD_*...): local processes inherit it, remote ones get it from the
    # launcher.
    passed_on = {k: v for k, v in os.environ.items() if k.startswith(("PS_", "MXNET_", "HOROVOD_"))}
    stamp = {**passed_on, "GLUON_PDQN_JOB_STAMP": directory.now_stamp()}
    program = [sys.executable, "-m", "gluon_pdqn.cli", *command]
    options = dict(launcher=launcher, hosts=hosts, interface=interface, port=port, deadline=deadline,
                   environment=stamp, stall_timeout=stall_timeout, ssh_config=ssh_config)
    if horovod:
        job = HorovodJob(workers, program, **options)
        click.echo(f"job: Horovod rendezvous on {job.host}:{job.port}, {workers} rank(s) allreducing over Gloo on "
                   f"{job.gloo_interface}, launcher {launcher}")
    else:
        servers = servers or 1
        job = Job(workers, servers, program, **options)
        click.echo(f"job: scheduler on {job.host}:{job.port}, {servers} server(s), {workers} worker(s), "
                   f"launcher {launcher}")
    job.start()
    try:
        return job.wait()  # after a signal, the job has said which workers wrote a checkpoint
    except JobFailed as e:
        raise TrainingStopped(str(e)) from None


@cli.command()
def info():
    """Versions, MXNet features (CUDA, DIST_KVSTORE) and the devices MXNet can see."""
    from importlib import metadata

    import mxnet as mx

    click.echo(f"gluon-pdqn {__version__} on Python {platform.python_version()} ({platform.machine()})")
    for package in ("mxnet", "mxnet-cu112", "mxnet-cu117", "numpy", "gymnasium", "ale-py", "gluonnlp", "click",
                    "tensorboardX", "horovod"):
        try:
            click.echo(f"  {package:<12} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    features = mx.runtime.Features()
    names = ("CUDA", "CUDNN", "NCCL", "DIST_KVSTORE", "MKLDNN", "OPENMP")
    click.echo("MXNet features: " + ", ".join(f"{n}={'yes' if features.is_enabled(n) else 'no'}" for n in names))
    gpus = mx.context.num_gpus()
    click.echo(f"CPU cores: {os.cpu_count()}; GPUs visible to MXNet: {gpus}")
    click.echo("contexts: cpu:0 (cpu:1, cpu:2, ... stand in for several devices on one CPU)"
               + "".join(f", gpu:{i}" for i in range(gpus)))
    return 0


def _quiet_storage_errors_in_threads(args) -> None:
    """A background writer (TensorBoard's) that hits a full disk must not print a traceback: the main thread
    meets the same error at its next write and reports it in one line. Anything else is reported as usual."""
    if not issubclass(args.exc_type, OSError):
        threading.__excepthook__(args)


def main(argv=None) -> None:
    """Entry point: run the command; bad input ends with one line on stderr and exit code 2, the faults of a
    run with codes 3 (stopped: non-finite updates, a lost actor), 4 (the environment's fault) and 5 (the run
    directory cannot be written)."""
    threading.excepthook = _quiet_storage_errors_in_threads
    try:
        code = cli.main(args=argv, prog_name="gluon-pdqn", standalone_mode=False)
    except click.exceptions.Exit as e:
        code = e.exit_code
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        code = e.exit_code
    except (UserError, TrainingStopped, EnvironmentFault, StorageFault) as e:
        click.echo(f"error: {e}", err=True)
        code = e.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("interrupted", err=True)
        code = 130
    code = code if isinstance(code, int) else 0
    if is_launched_worker():
        # A worker of a launched job: everything is written; skip ps-lite's exit barrier, which was seen to
        # hang here (and, on a Horovod rank, MXNet's own exit, which raises when Horovod has shut down). The
        # launcher ends the servers and the scheduler once every worker has exited.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
