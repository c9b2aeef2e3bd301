"""Stable-Baselines3's DQN against gluon_pdqn, side by side in one run: CartPole-v1 time to solve, and Pong
throughput while learning.

**CartPole.**
Solved means a greedy 10-episode evaluation averaging >= 475, evaluated every 2,000 env steps with the
evaluation's time included, within 50,000 env steps (SB3 and our `single` mode) or the preset's budget
(our `async` mode). For each seed the three run one after another, each in a fresh process, so they do not
share the cores; seconds are measured from the start of training (not interpreter or library start-up).

The peer is SB3's DQN with the RL Zoo's tuned CartPole-v1 hyperparameters (rl-baselines3-zoo,
hyperparams/dqn.yml). It needs the optional extra: `make peers` installs stable-baselines3 2.9.2 and
torch 2.13.0 (CPU) into .venv and runs this. Results go to stdout and benchmarks/results/peers.json.

**Pong.** Env steps/s while learning (after env step 1,000, over ``--pong-steps``), the same algorithm and
settings on both sides: plain DQN as SB3's is, CnnPolicy / Nature CNN, 1 env, random acting until env step
1,000 and then epsilon 0.1 (constant: both skip the forward pass on a step that explores), an update every 4 env steps,
batch 32, Adam 1e-4, gradient norm clipped at 10, target refreshed every 1,000 updates (SB3 counts that
interval in env steps: 4,000), replay of 10,000, ALE Pong-v5 with the DQN preprocessing. Ours also in bf16
where the CPU has it, and with double DQN. Runs interleave over ``--pong-repeats`` rounds; medians reported.
Results: benchmarks/results/peers_pong.json.

    python benchmarks/peers.py [--seeds 0,1,2] [--case cartpole|pong|all]
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


PONG_LEARNING_STARTS = 1_000


def sb3_pong(seed: int, steps: int) -> dict:
    """SB3's DQN on Pong with the benchmark's settings; env steps/s and updates/s after learning starts."""
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.atari_wrappers import AtariWrapper
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

    gym.register_envs(ale_py)

    def make():
        env = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0, full_action_space=False)
        return AtariWrapper(env, noop_max=30, frame_skip=4, screen_size=84, terminal_on_life_loss=True,
                            clip_reward=True)

    class Clock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.start = None

        def _on_step(self) -> bool:
            if self.num_timesteps == PONG_LEARNING_STARTS:
                self.start = time.perf_counter()
                self.updates_before = self.model._n_updates
            return True

    env = VecFrameStack(DummyVecEnv([make]), 4)
    model = DQN("CnnPolicy", env, learning_rate=1e-4, buffer_size=10_000, learning_starts=PONG_LEARNING_STARTS,
                batch_size=32, gamma=0.99, train_freq=4, gradient_steps=1, target_update_interval=4_000,
                exploration_initial_eps=0.1, exploration_final_eps=0.1, max_grad_norm=10.0,
                optimize_memory_usage=False, seed=seed, verbose=0)
    clock = Clock()
    model.learn(total_timesteps=steps, callback=clock)
    seconds = time.perf_counter() - clock.start
    return {"env_steps_per_s": (steps - PONG_LEARNING_STARTS) / seconds,
            "updates_per_s": (model._n_updates - clock.updates_before) / seconds}


def ours_pong(seed: int, steps: int, overrides: dict) -> dict:
    from pong_loop import ours_loop, pong_config

    return ours_loop(pong_config(steps, False, **overrides), seed)


def pong_case(steps: int, repeats: int, output: str) -> None:
    import gluon_pdqn

    gluon_pdqn.give_mxnet_every_core()  # as the command line does for a CNN, before MXNet loads
    from gluon_pdqn.networks.precision import cpu_has_bf16

    contenders = {"sb3-dqn (CnnPolicy, plain DQN)": None, "gluon_pdqn, plain DQN, fp32": {}}
    if cpu_has_bf16():
        contenders["gluon_pdqn, plain DQN, bf16"] = {"run.precision": "bf16"}
    contenders["gluon_pdqn, double DQN, fp32"] = {"agent.double_q": True}
    if cpu_has_bf16():
        contenders["gluon_pdqn, double DQN, bf16"] = {"agent.double_q": True, "run.precision": "bf16"}
    contenders["gluon_pdqn, plain DQN, 4 envs acting batched, fp32"] = {"env.num_envs": 4}
    runs = {name: [] for name in contenders}
    load_before = os.getloadavg()
    for seed in range(repeats):
        for name, overrides in contenders.items():
            if overrides is None:
                result = subprocess.run([sys.executable, __file__, "--sb3-pong-seed", str(seed), "--pong-steps",
                                         str(steps)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
                if result.returncode != 0:
                    sys.exit(f"sb3 pong seed {seed} failed: {result.stderr.strip().splitlines()[-1]}")
                run = json.loads(result.stdout.strip().splitlines()[-1])
            else:
                run = ours_pong(seed, steps, overrides)
            runs[name].append(run)
            click.echo(f"round {seed}, {name}: {run['env_steps_per_s']:.1f} env steps/s")
    medians = {name: statistics.median(r["env_steps_per_s"] for r in rs) for name, rs in runs.items()}
    peer = medians["sb3-dqn (CnnPolicy, plain DQN)"]
    report = {"benchmark": "peers_pong", "steps": steps, "learning_starts": PONG_LEARNING_STARTS,
              "repeats": repeats, "runs": runs, "median_env_steps_per_s": medians,
              "median_updates_per_s": {n: statistics.median(r["updates_per_s"] for r in rs) for n, rs in runs.items()},
              "vs_sb3": {n: round(v / peer, 3) for n, v in medians.items()}, "load_average_before": load_before}
    for name, value in medians.items():
        click.echo(f"{name}: median {value:.1f} env steps/s ({report['vs_sb3'][name]:.2f}x SB3)")
    write_results(report, output)


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
@click.option("--case", type=click.Choice(["cartpole", "pong", "all"]), default="all", show_default=True)
@click.option("--pong-steps", default=3_000, show_default=True, help="Env steps per Pong run.")
@click.option("--pong-repeats", default=3, show_default=True)
@click.option("--sb3-seed", type=int, hidden=True, help="Internal: run SB3 for this seed and print JSON.")
@click.option("--sb3-pong-seed", type=int, hidden=True, help="Internal: run SB3 on Pong and print JSON.")
@click.option("--output", default=os.path.join(os.path.dirname(__file__), "results", "peers.json"),
              show_default=True)
@click.option("--pong-output", default=os.path.join(os.path.dirname(__file__), "results", "peers_pong.json"),
              show_default=True)
def main(seeds, case, pong_steps, pong_repeats, sb3_seed, sb3_pong_seed, output, pong_output):
    if sb3_seed is not None:
        print(json.dumps(sb3_solve(sb3_seed)))
        return
    if sb3_pong_seed is not None:
        print(json.dumps(sb3_pong(sb3_pong_seed, pong_steps)))
        return
    try:
        versions = {p: metadata.version(p) for p in ("stable-baselines3", "torch")}
    except metadata.PackageNotFoundError:
        sys.exit("the peer is not installed: run `make peers` (stable-baselines3 2.9.2, torch 2.13.0 CPU)")
    if case in ("pong", "all"):
        pong_case(pong_steps, pong_repeats, pong_output)
    if case == "pong":
        return
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
