"""Evaluation protocols and the kept best policy (checkpoints/best)."""
import csv
import dataclasses
import json
import os

import numpy as np
import pytest

from gluon_pdqn import checkpoint, compare
from gluon_pdqn.run import loop
from gluon_pdqn.config import load_preset
from gluon_pdqn.envs import make_env, protocols
from gluon_pdqn.errors import UserError
from gluon_pdqn.run.loop import Training

from test_cli import assert_one_line_error, gluon_pdqn
from test_training import small_cfg


def test_atari_protocols_fix_epsilon_noops_sticky_actions_and_the_frame_cap():
    cfg = load_preset("atari-modern")
    nature = protocols.resolve(cfg, is_atari=True)  # run.eval_protocol=auto
    assert nature.name == "nature" and nature.epsilon == 0.05
    assert (nature.env.noop_max, nature.env.sticky_actions, nature.env.max_episode_frames) == (30, 0.0, 18_000)
    machado = protocols.resolve(cfg, is_atari=True, protocol="machado")
    assert machado.epsilon == cfg.exploration.eval_epsilon
    assert (machado.env.noop_max, machado.env.sticky_actions, machado.env.max_episode_frames) == (0, 0.25, 108_000)
    plain = protocols.resolve(load_preset("cartpole"), is_atari=False)
    assert plain.name == "plain" and plain.env == load_preset("cartpole").env
    with pytest.raises(UserError, match="Atari"):
        protocols.resolve(load_preset("cartpole"), is_atari=False, protocol="nature")


def test_the_frame_cap_truncates_an_atari_evaluation_episode():
    cfg = protocols.resolve(load_preset("atari-modern"), is_atari=True).env
    env = make_env(dataclasses.replace(cfg, max_episode_frames=400), evaluation=True)
    env.reset(seed=0)
    steps, truncated, terminated = 0, False, False
    while not (truncated or terminated):
        _, _, terminated, truncated, _ = env.step(0)
        steps += 1
    env.close()
    assert truncated and not terminated and steps <= 400 // 4 + 1  # frame skip 4


def scripted_evaluations(monkeypatch, means, confirmations=(), confirm_episodes=30):
    """Make the loop's evaluations return ``means`` in turn, and its confirmations (the calls for
    ``confirm_episodes`` episodes) ``confirmations``; returns the seeds of all calls."""
    means, confirmations, seeds = list(means), list(confirmations), []

    def evaluate(q_values, env_cfg, n_actions, episodes, epsilon, seed, interrupted=None):
        seeds.append(seed)
        return np.array([(confirmations if episodes == confirm_episodes else means).pop(0)])
    monkeypatch.setattr(loop, "evaluate", evaluate)
    return seeds


def best_state(run_dir):
    return checkpoint.read_state(checkpoint.resolve(str(run_dir), "best"))


def test_the_best_bundle_is_replaced_only_by_a_strictly_better_evaluation_and_survives_resume(tmp_path, monkeypatch):
    cfg = small_cfg(run__total_env_steps=1600, run__eval_every=200, run__checkpoint_every=200,
                    run__keep_checkpoints=10, run__confirm_episodes=0)
    scripted_evaluations(monkeypatch, [10.0, 20.0, 20.0, 15.0])
    Training(cfg, str(tmp_path)).run(stop_at=800)
    state = best_state(tmp_path)
    assert state["counters"]["env_steps"] == 400 and state["eval"]["best"] == 20.0  # not the equal one at 600
    assert state["replay"] is None  # the best bundle holds the policy, not the replay

    # Resumed from a checkpoint older than the best bundle (its own best is 10): 15 and 19 must not replace
    # the kept 20; 25 does.
    older = checkpoint.list_complete(str(tmp_path))[0]
    assert older.endswith("ckpt-000000000200") and checkpoint.read_state(older)["eval"]["best"] == 10.0
    scripted_evaluations(monkeypatch, [15.0, 19.0, 25.0])
    Training(cfg, str(tmp_path), resume_bundle=older).run(stop_at=800)
    state = best_state(tmp_path)
    assert state["eval"]["best"] == 25.0 and state["counters"]["env_steps"] == 800


def test_a_best_or_a_solve_is_what_its_confirmation_on_other_episodes_says(tmp_path, monkeypatch):
    """The best of many short evaluations is biased upward: a candidate is played again on other seeds, and
    only that figure is kept as the best and can solve the run."""
    cfg = small_cfg(run__total_env_steps=2000, run__eval_every=200, run__eval_episodes=10, run__confirm_episodes=30,
                    run__stop_return=18.0)
    # Raw means 10, 20, 12, 19, 21: 10 (the first) and 20 are candidates and confirm at 9 and 17 (20 reached the
    # goal, but its confirmation did not); 12 is none; 19 confirms at 19: solved there, at 800 env steps.
    seeds = scripted_evaluations(monkeypatch, [10.0, 20.0, 12.0, 19.0, 21.0], [9.0, 17.0, 19.0])
    summary = Training(cfg, str(tmp_path)).run()
    assert summary.solved_at_env_steps == 800 and summary.best_eval_mean == 19.0 and summary.last_eval_mean == 19.0
    state = best_state(tmp_path)
    assert state["eval"]["best"] == 19.0 and state["counters"]["env_steps"] == 800
    with open(tmp_path / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["mean_return"] for r in rows] == ["10.0", "20.0", "12.0", "19.0"]
    assert [r["confirmed_mean_return"] for r in rows] == ["9.0", "17.0", "", "19.0"]
    assert len(set(seeds)) == len(seeds)  # every evaluation and confirmation plays episodes of its own seeds
    figures = compare.run_figures(str(tmp_path), threshold=18.0)
    assert figures["env_steps_to_threshold"] == 800 and figures["best_return"] == 19.0


def test_evaluate_loads_the_best_bundle_and_says_when_there_is_none(tmp_path):
    run_dir = tmp_path / "run"
    result = gluon_pdqn("train", "--run-dir", str(run_dir), "--quiet", "--steps", "600", "--set",
                        "run.eval_every=300", "--set", "run.eval_episodes=2", "--set", "replay.learning_starts=200",
                        "--set", "network.hidden=16,16")
    assert result.returncode == 0, result.stderr
    report = json.loads(gluon_pdqn("evaluate", str(run_dir), "--checkpoint", "best", "--episodes", "2",
                                   "--json").stdout)
    assert report["checkpoint"].endswith(os.path.join("checkpoints", "best")) and report["protocol"] == "plain"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best_eval_mean"] == checkpoint.read_state(report["checkpoint"])["eval"]["best"]
    assert summary["eval_protocol"].startswith("plain")

    never = tmp_path / "never"
    assert gluon_pdqn("train", "--run-dir", str(never), "--quiet", "--steps", "300", "--set", "run.eval_every=0",
                      "--set", "replay.learning_starts=100", "--set", "network.hidden=16,16").returncode == 0
    assert_one_line_error(gluon_pdqn("evaluate", str(never), "--checkpoint", "best"), "no best checkpoint")
    assert_one_line_error(gluon_pdqn("evaluate", str(never), "--protocol", "nature"), "Atari")
