"""Mode async: the actors' protocol, the learners' targets, shutdown, faults, and learning."""
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import mxnet as mx
import numpy as np
import pytest

from gluon_pdqn import checkpoint
from gluon_pdqn import envs
from gluon_pdqn.acting import Rollout
from gluon_pdqn.acting.async_actors import run_actor
from gluon_pdqn.build import async_schedules
from gluon_pdqn.run.loop import Training
from gluon_pdqn.config import load_preset
from gluon_pdqn.envs import EnvSpec
from gluon_pdqn.errors import EnvironmentFault, TrainingStopped, UserError
from gluon_pdqn.learners.async_learners import A3CLearner, AsyncQLearner, discounted_returns

SPEC = EnvSpec("v", (2,), np.dtype(np.float32), (2,), 1, 2, False)
QUICK = {"run.eval_every": 0, "run.checkpoint_every": 0, "run.stop_return": None, "run.log_every": 500,
         "network.hidden": "16,16"}


def async_cfg(**overrides):
    return load_preset("async").replace({**QUICK, **{k.replace("__", "."): v for k, v in overrides.items()}})


def rollout(rewards, terminated, obs=None, bootstrap=None):
    n = len(rewards)
    obs = np.arange(2 * n, dtype=np.float32).reshape(n, 2) if obs is None else obs
    return Rollout(actor=0, obs=obs, actions=np.zeros(n, np.int64), rewards=np.asarray(rewards, np.float32),
                   versions=np.zeros(n, np.int64),
                   bootstrap_obs=np.full(2, 9.0, np.float32) if bootstrap is None else bootstrap,
                   terminated=terminated)


def test_discounted_returns_bootstrap_only_when_not_terminated():
    r = rollout([1.0, 2.0, 3.0], terminated=False)
    np.testing.assert_allclose(discounted_returns(r, 10.0, 0.5), [1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 10,
                                                                   2 + 0.5 * 3 + 0.25 * 10, 3 + 0.5 * 10])
    r = rollout([1.0, 2.0, 3.0], terminated=True)
    np.testing.assert_allclose(discounted_returns(r, 10.0, 0.5), [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3])


@pytest.mark.parametrize("algo", ["one-step-q", "n-step-q"])
def test_q_targets_use_the_target_network(algo):
    cfg = async_cfg(actors__algo=algo, agent__gamma=0.5)
    learner = AsyncQLearner(cfg, SPEC, mx.cpu())
    r = rollout([1.0, 2.0], terminated=False)
    successors = np.concatenate([r.obs[1:], r.bootstrap_obs[None]])
    q_next = learner.target(mx.nd.array(successors)).asnumpy().max(axis=1)
    targets = learner.targets([r])
    if algo == "n-step-q":
        expected = [1 + 0.5 * 2 + 0.25 * q_next[1], 2 + 0.5 * q_next[1]]
    else:
        expected = [1 + 0.5 * q_next[0], 2 + 0.5 * q_next[1]]
    np.testing.assert_allclose(targets, expected, rtol=1e-5)
    # The target network stays put until the env steps cross a multiple of actors.target_update_env_steps:
    # updates change the online network only, then the crossing update refreshes it.
    every = cfg.actors.target_update_env_steps
    assert every > 10
    for k in range(5):
        learner.learn([rollout([5.0, 5.0], terminated=True)], env_steps=2 * (k + 1))
    np.testing.assert_allclose(learner.targets([r]), expected, rtol=1e-5)
    learner.learn([rollout([5.0, 5.0], terminated=True)], env_steps=every + 1)
    assert not np.allclose(learner.targets([r]), expected, rtol=1e-5)


def test_a3c_raises_the_probability_of_a_rewarded_action():
    learner = A3CLearner(async_cfg(actors__algo="a3c", optim__learning_rate=0.01), SPEC, mx.cpu())
    obs = np.ones((1, 2), np.float32)
    before = learner.action_values(obs)[0]
    np.testing.assert_allclose(before.sum(), 1.0, rtol=1e-6)
    for k in range(30):
        r = Rollout(0, obs.copy(), np.array([1]), np.array([1.0], np.float32), np.array([0]), obs[0], True)
        learner.learn([r], env_steps=k + 1)
    assert learner.action_values(obs)[0][1] > max(0.9, before[1])


def test_an_actor_hands_in_consecutive_rollouts_of_at_most_t_max_steps():
    """Driven by hand over a pipe: rollouts chain state to state, cut at t_max and at episode ends."""
    cfg = async_cfg(env__id="toy_envs:Counting-v0", actors__t_max=3, actors__count=1)
    ours, theirs = multiprocessing.Pipe()
    actor = threading.Thread(target=run_actor, args=(0, theirs, cfg, envs.describe(cfg.env), async_schedules(cfg)[0], 0))
    actor.start()
    rollouts, requests = [], 0
    while len(rollouts) < 6:
        kind, payload = ours.recv()
        if kind == "act":
            requests += 1
            ours.send(("values", np.array([0.0, 1.0]), 10**9, requests))  # eps fully decayed: mostly action 1
        else:
            rollouts.append(payload)
    while ours.recv()[0] != "act":
        pass
    ours.send(("stop",))
    actor.join(5)
    assert not actor.is_alive()
    # Counting-v0: 5 steps per episode, obs = [t, episode], reward t. So rollouts of 3, 2, 3, 2, ...
    assert [len(r.rewards) for r in rollouts] == [3, 2, 3, 2, 3, 2]
    assert [r.terminated for r in rollouts] == [False, True] * 3
    for first, second in zip(rollouts[::2], rollouts[1::2]):
        np.testing.assert_array_equal(second.obs[0], first.bootstrap_obs)
        assert second.episodes == [(15.0, 5)]
    np.testing.assert_array_equal(rollouts[0].rewards, [1, 2, 3])
    assert rollouts[1].versions.tolist() == [4, 5]  # the version each action's answer carried


def test_async_runs_with_processes_and_logs_per_actor_figures(tmp_path):
    cfg = async_cfg(actors__backend="process", actors__count=2, run__total_env_steps=1500)
    summary = Training(cfg, str(tmp_path)).run()
    assert summary.counters["env_steps"] >= 1500 and summary.counters["learner_steps"] > 100
    actors = (tmp_path / "actors.csv").read_text().splitlines()
    assert actors[0].startswith("env_steps,actor,final_epsilon") and len(actors) >= 1 + 2 * 3
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "async/policy_lag" in header and "async/inference_batch" in header
    bundle = checkpoint.resolve(str(tmp_path))
    resumed = Training(cfg.replace({"run.total_env_steps": 2500}), str(tmp_path), resume_bundle=bundle).run()
    assert resumed.counters["env_steps"] >= 2500 and resumed.notes


def test_a_failing_actor_ends_the_run_with_its_error(tmp_path):
    cfg = async_cfg(env__id="toy_envs:Failing-v0", actors__count=2, run__total_env_steps=10_000)
    with pytest.raises(EnvironmentFault, match="RuntimeError: the environment broke.*[(]actor [0-9][)].*checkpoint"):
        Training(cfg, str(tmp_path)).run()
    assert checkpoint.list_complete(str(tmp_path))  # the work done is kept


def test_a_killed_actor_process_ends_the_run_promptly(tmp_path):
    cfg = async_cfg(actors__backend="process", actors__count=2, run__total_env_steps=10**7)
    training = Training(cfg, str(tmp_path))
    killer = threading.Timer(3.0, lambda: [os.kill(p.pid, signal.SIGKILL) for p in
                                           multiprocessing.active_children()[:1]])
    killer.start()
    start = time.monotonic()
    with pytest.raises(TrainingStopped, match="async actor [0-9] ended unexpectedly.*; the work so far is in checkpoint"):
        training.run()
    assert time.monotonic() - start < 30
    assert checkpoint.list_complete(str(tmp_path))
    assert not multiprocessing.active_children()


def test_async_learns_on_one_device_only(tmp_path):
    with pytest.raises(UserError, match="one device"):
        Training(async_cfg(run__ctx="cpu:0,cpu:1"), str(tmp_path))


@pytest.mark.slow  # (moved out of the default suite to keep it within 13 minutes)
def test_stress_eight_actors_then_ctrl_c_leaves_a_checkpoint(tmp_path):
    """8 actors for a few thousand updates: no crash, no deadlock, finite losses; SIGINT stops it cleanly."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "gluon_pdqn.cli", "train", "--mode", "async", "--actors", "8",
                                "--actor-backend", "process", "--run-dir", str(run_dir), "--steps", "10000000",
                                "--set", "run.log_every=2000", "--set", "run.eval_every=0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    metrics_csv = run_dir / "metrics.csv"
    while time.monotonic() < deadline:
        rows = metrics_csv.read_text().splitlines() if metrics_csv.exists() else []
        if len(rows) > 1 and int(rows[-1].split(",")[2]) >= 3000:  # learner_steps
            break
        time.sleep(1)
    actors = [pid for pid in children_of(process.pid) if "spawn_main" in cmdline(pid)]
    assert len(actors) == 8
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "gluon-pdqn train --resume" in out
    rows = [r.split(",") for r in metrics_csv.read_text().splitlines()]
    header, values = rows[0], rows[1:]
    assert int(values[-1][header.index("learner_steps")]) >= 3000
    losses = [float(v[header.index("losses/td_loss")]) for v in values]
    assert all(np.isfinite(losses)) and int(values[-1][header.index("losses/skipped_updates")]) == 0
    bundle = checkpoint.resolve(str(run_dir))
    assert os.path.exists(os.path.join(bundle, "params.params"))
    assert not [pid for pid in actors if os.path.exists(f"/proc/{pid}")], "actor processes outlived the run"


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry))
    return children
