"""CartPole-v1 time to solve, side by side: Stable-Baselines3's DQN against gluon_pdqn, in one run.

Solved means a greedy 10-episode evaluation averaging >= 475, evaluated every 2,000 env steps with the
evaluation's time included, within 50,000 env steps (SB3 and our `single` mode) or the preset's budget
(our `async` mode). For each seed the three run one after another, each in a fresh process, so they do not
share the cores; seconds are measured from the start of training (not interpreter or library start-up).

The peer is SB3's DQN with the RL Zoo's tuned CartPole-v1 hyperparameters (rl-baselines3-zoo,
hyperparams/dqn.yml). It needs the optional extra: `make peers` installs stable-baselines3 2.9.2 and
torch 2.13.0 (CPU) into .venv and runs this. Results go to stdout and benchmarks/results/peers.json.

    python benchmarks/peers.py [--seeds 0,1,2]
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata

import click

from results_file import write_results

EVAL_EVERY, EVAL_EPISODES, SOLVED, BUDGET = 2_000, 10, 475.0, 50_000

# rl-baselines3-zoo, hyperparams/dqn.yml, CartPole-v1.
RL_ZOO_CARTPOLE = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1_000, gamma=0.99,
                       target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
                       exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]))


def sb3_solve(seed: int) -> dict:
    """Train SB3's DQN until solved or the budget; runs in its own process (see --sb3-seed)."""
    import gymnasium as gym
    import numpy as np
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    class SolveCheck(BaseCallback):
        def __init__(self):
            super().__init__()
            self.solved_at = None
            self.eval_env = gym.make("CartPole-v1")
            self.start = time.perf_counter()

        def _on_step(self) -> bool:
            if self.num_timesteps % EVAL_EVERY:
                return True
            returns = []
            for episode in range(EVAL_EPISODES):
                obs, _ = self.eval_env.reset(seed=10_000 * seed + episode)
                done, total = False, 0.0
                while not done:
                    action, _ = self.model.predict(obs, deterministic=True)
                    obs, reward, terminated, truncated, _ = self.eval_env.step(action)
                    total += reward
                    done = terminated or truncated
                returns.append(total)
            if np.mean(returns) >= SOLVED:
                self.solved_at = (self.num_timesteps, time.perf_counter() - self.start)
                return False
            return True

    model = DQN("MlpPolicy", gym.make("CartPole-v1"), seed=seed, verbose=0, **RL_ZOO_CARTPOLE)
    check = SolveCheck()
    model.learn(total_timesteps=BUDGET, callback=check)
    return {"solved": check.solved_at is not None,
            "solve_env_steps": check.solved_at[0] if check.solved_at else None,
            "solve_seconds": round(check.solved_at[1], 2) if check.solved_at else None}


def ours_solve(seed: int, preset: str) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = os.path.join(scratch, "run")
        command = [sys.executable, "-m", "gluon_pdqn.cli", "train", "--quiet", "--preset", preset, "--seed",
                   str(seed), "--run-dir", run_dir, "--set", f"run.eval_every={EVAL_EVERY}"]
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            sys.exit(f"{preset} seed {seed} failed: {result.stderr.strip()}")
        with open(os.path.join(run_dir, "summary.json")) as f:
            summary = json.load(f)
    return {"solved": summary["solved_at_env_steps"] is not None,
            "solve_env_steps": summary["solved_at_env_steps"], "solve_seconds": summary["solved_at_seconds"]}


def _median_seconds(runs: list[dict]) -> float:
    """Median seconds to solve; an unsolved run counts as infinitely slow, so a median never hides it."""
    return statistics.median(r["solve_seconds"] if r["solved"] else float("inf") for r in runs)


@click.command()
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--sb3-seed", type=int, hidden=True, help="Internal: run SB3 for this seed and print JSON.")
@click.option("--output", default=os.path.join(os.path.dirname(__file__), "results", "peers.json"),
              show_default=True)
def main(seeds, sb3_seed, output):
    if sb3_seed is not None:
        print(json.dumps(sb3_solve(sb3_seed)))
        return
    try:
        versions = {p: metadata.version(p) for p in ("stable-baselines3", "torch")}
    except metadata.PackageNotFoundError:
        sys.exit("the peer is not installed: run `make peers` (stable-baselines3 2.9.2, torch 2.13.0 CPU)")
    contenders = {"sb3-dqn": None, "gluon_pdqn single (preset cartpole)": "cartpole",
                  "gluon_pdqn async n-step Q, 4 actors (preset async)": "async"}
    runs = {name: [] for name in contenders}
    load_before = os.getloadavg()
    for seed in (int(s) for s in seeds.split(",")):
        for name, preset in contenders.items():
            if preset is None:
                result = subprocess.run([sys.executable, __file__, "--sb3-seed", str(seed)], capture_output=True,
                                        text=True, stdin=subprocess.DEVNULL)
                if result.returncode != 0:
                    sys.exit(f"sb3 seed {seed} failed: {result.stderr.strip().splitlines()[-1]}")
                run = json.loads(result.stdout.strip().splitlines()[-1])
            else:
                run = ours_solve(seed, preset)
            runs[name].append({"seed": seed, **run})
            click.echo(f"seed {seed}, {name}: " + (f"solved at {run['solve_env_steps']:,} env steps in "
                                                   f"{run['solve_seconds']:.1f} s" if run["solved"] else "not solved"))
    medians = {name: _median_seconds(r) for name, r in runs.items()}
    peer = medians["sb3-dqn"]
    report = {"benchmark": "peers", "task": f"CartPole-v1, greedy {EVAL_EPISODES}-episode mean >= {SOLVED:g}",
              "versions": versions, "runs": runs,
              "median_solve_seconds": {k: (v if v != float("inf") else None) for k, v in medians.items()},
              "speedup_vs_sb3": {k: round(peer / v, 2) for k, v in medians.items()
                                 if k != "sb3-dqn" and v not in (0, float("inf")) and peer != float("inf")},
              "load_average_before": load_before}
    for name, value in medians.items():
        ratio = report["speedup_vs_sb3"].get(name)
        click.echo(f"{name}: median {value:.1f} s" + (f" ({ratio}x SB3's speed)" if ratio else ""))
    write_results(report, output)


if __name__ == "__main__":
    main()
