"""How much a noisy network explores: how often its action differs from the action of its means.

Rainbow explores with noisy layers (Fortunato et al. 2018) instead of epsilon, and the noise scales are learned,
so how much it explores at a point of training is not a setting but a quantity to measure. For each checkpoint
this plays ``--steps`` env steps of the run's training environment as training acts (new noise before every
action) and counts the steps where that action differs from the one the noise-free means choose for the same
observation. The epsilon that would change as many actions is rate * n / (n - 1) for n actions (a uniform
random action is the greedy one 1/n of the time). The mean return of the episodes played that way (the
training return's kind of figure) is reported beside it, with the noise scales' mean magnitude per layer against
its means'.

    python benchmarks/noisy_exploration.py RUN/checkpoints/ckpt-000000250000 RUN --steps 5000 \\
        --name noisy_exploration_breakout_v0

A run directory stands for its newest checkpoint.
"""
from __future__ import annotations

import os

import click
import numpy as np

from results_file import write_results

HERE = os.path.dirname(os.path.abspath(__file__))


def _mean_abs(param) -> float:
    return float(np.abs(param.data().asnumpy()).mean())


def measure(bundle: str, steps: int, seed: int) -> dict:
    """Play ``steps`` env steps with the noisy policy of ``bundle``; see the module's docstring."""
    import mxnet as mx

    from gluon_pdqn import checkpoint, envs, networks
    from gluon_pdqn.build import load_policy

    cfg = checkpoint.config_of(bundle)
    if not cfg.network.noisy:
        raise click.UsageError(f"{bundle}: its network has no noisy layers (network.noisy=false)")
    spec = envs.describe(cfg.env)
    learner = load_policy(bundle, cfg, spec, [mx.cpu()])
    params = networks.structural_params(learner.online)  # by place: features.2.weight, head.value.weight_sigma...
    scales = {}
    for key in params:
        if key.endswith(".weight_sigma"):
            layer = key[:-len(".weight_sigma")]
            scales[layer] = {"weight_mean_abs": _mean_abs(params[layer + ".weight"]),
                             "weight_sigma_mean_abs": _mean_abs(params[key])}
    env = envs.make_env(cfg.env)
    obs, _ = env.reset(seed=seed)
    changed, returns, episode_return = 0, [], 0.0
    try:
        for _ in range(steps):
            action = int(learner.greedy_values(obs[None])[0].argmax())  # new noise for each action, as in training
            with learner.without_noise():
                changed += action != int(learner.greedy_values(obs[None])[0].argmax())
            obs, reward, terminated, truncated, _ = env.step(action)
            episode_return += float(reward)
            if terminated or truncated:
                returns.append(episode_return)
                episode_return = 0.0
                obs, _ = env.reset()
    finally:
        env.close()
    rate = changed / steps
    return {"checkpoint": os.path.join(os.path.basename(checkpoint.run_dir_of(bundle)), os.path.basename(bundle)),
            "env": cfg.env.id,
            "env_steps_of_checkpoint": checkpoint.read_state(bundle)["counters"]["env_steps"],
            "steps_played": steps, "actions_changed_by_noise": rate,
            "equivalent_epsilon": rate * spec.n_actions / (spec.n_actions - 1),
            "episodes": len(returns), "mean_return_noisy": round(float(np.mean(returns)), 2) if returns else None,
            "noise_scales": scales}


@click.command()
@click.argument("checkpoints", nargs=-1, required=True)
@click.option("--steps", type=click.IntRange(min=1), default=5000, show_default=True)
@click.option("--seed", type=int, default=5, show_default=True)
@click.option("--name", default="noisy_exploration", show_default=True, help="Results in results/NAME.json.")
def main(checkpoints, steps, seed, name):
    from gluon_pdqn import checkpoint
    from gluon_pdqn.errors import UserError

    rows = []
    load_before = os.getloadavg()
    for path in checkpoints:
        try:
            row = measure(checkpoint.resolve(path), steps, seed)
        except UserError as e:
            raise click.ClickException(str(e)) from None
        rows.append(row)
        click.echo(f"{row['checkpoint']} ({row['env_steps_of_checkpoint']:,} env steps): noise changed "
                   f"{row['actions_changed_by_noise']:.1%} of {steps} actions (epsilon "
                   f"{row['equivalent_epsilon']:.2f}); {row['episodes']} episodes, mean return "
                   f"{row['mean_return_noisy']}")
    write_results({"benchmark": "noisy_exploration", "steps": steps, "seed": seed, "rows": rows,
                   "load_average_before": load_before}, os.path.join(HERE, "results", f"{name}.json"))


if __name__ == "__main__":
    main()
