"""MinAtar as a first-class pixel benchmark: its ids work by name, its grids reach the small CNN, it learns."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from gluon_pdqn.architecture import resolve_name
from gluon_pdqn.config import load_preset
from gluon_pdqn.envs import describe, make_env

from test_cli import gluon_pdqn


def test_minatar_ids_work_without_registering_them_and_reach_the_small_cnn():
    cfg = load_preset("minatar")
    spec = describe(cfg.env)
    assert spec.obs_shape == (4, 10, 10) and spec.obs_dtype == np.uint8 and spec.n_actions == 3
    assert resolve_name(cfg.network, spec) == "small_cnn"
    env = make_env(cfg.env)
    obs, _ = env.reset(seed=0)
    raw = env.unwrapped.game.state()  # MinAtar's own (10, 10, 4) bool grid, channels last
    np.testing.assert_array_equal(obs, np.moveaxis(raw, -1, 0).astype(np.uint8) * 255)
    env.close()


def test_minatars_v0_ids_with_all_six_actions_are_made_without_gymnasiums_out_of_date_warning(recwarn):
    """``-v0`` plays all 6 actions as the paper did, a choice the benchmarks offer (``--version v0``)."""
    env = make_env(load_preset("minatar").replace({"env.id": "MinAtar/Breakout-v0"}).env)
    assert env.action_space.n == 6
    env.close()
    assert not [w for w in recwarn if "out of date" in str(w.message)]


@pytest.mark.parametrize("env_id,preset,sets", [
    ("MinAtar/SpaceInvaders-v1", "minatar", []),
    ("ALE/Pong-v5", "atari-cpu", ["--set", "replay.capacity=2000", "--num-envs", "2"]),
    ("CartPole-v1", "cartpole", []),
    ("LunarLander-v3", "lunarlander", []),  # gymnasium's box2d environments are installed
])
def test_an_environment_without_a_preset_gets_its_familys(tmp_path, env_id, preset, sets):
    run_dir = tmp_path / "run"
    result = gluon_pdqn("train", "--env", env_id, "--run-dir", str(run_dir), "--steps", "120", "--set",
                        "replay.learning_starts=100", "--set", "run.eval_every=0", *sets)
    assert result.returncode == 0, result.stderr
    assert f"preset {preset} (the default for {env_id}" in result.stdout
    assert json.loads((run_dir / "config.json").read_text())["env"]["id"] == env_id
    assert json.loads((run_dir / "config.json").read_text())["preset"] == preset


def test_an_explicit_preset_wins_over_the_family(tmp_path):
    run_dir = tmp_path / "run"
    result = gluon_pdqn("train", "--preset", "cartpole", "--env", "MinAtar/Breakout-v1", "--run-dir", str(run_dir),
                        "--quiet", "--steps", "120", "--set", "replay.learning_starts=100", "--set", "run.eval_every=0")
    assert result.returncode == 0, result.stderr
    assert json.loads((run_dir / "config.json").read_text())["preset"] == "cartpole"


RANDOM_BREAKOUT = 0.43  # mean return of uniformly random play (200 episodes, benchmarks/minatar_curves.py)


@pytest.mark.slow  # (moved out of the default suite to keep it within 13 minutes)
def test_a_short_run_on_breakout_beats_random_play(tmp_path):
    """8,000 env steps with a faster-learning variant of the preset (Adam 1e-3, target every 200 updates,
    epsilon over 5,000 steps): the greedy policy scores several times what random play does."""
    run_dir = tmp_path / "run"
    result = gluon_pdqn("train", "--env", "MinAtar/Breakout-v1", "--run-dir", str(run_dir), "--quiet", "--steps",
                        "8000", "--set", "optim.name=adam", "--set", "optim.learning_rate=1e-3", "--set",
                        "replay.learning_starts=1000", "--set", "exploration.decay_steps=5000", "--set",
                        "exploration.epsilon_final=0.05", "--set", "agent.target_update_every=200", "--set",
                        "run.eval_every=8000", "--set", "run.eval_episodes=20", "--set", "run.checkpoint_every=0",
                        timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["last_eval_mean"] >= 3.5 * RANDOM_BREAKOUT, summary["last_eval_mean"]


def test_a_curve_set_resumes_an_interrupted_run_instead_of_counting_it(tmp_path, monkeypatch):
    """An interrupted run writes its summary too; the MinAtar benchmarks must resume it, not report it as a run
    that reached its steps (they once printed a run stopped at 798,560 frames as one of 1,000,000)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from minatar_curves import job, run_sets

    jobs = [job("MinAtar/Breakout-v1", seed, 1_000_000, str(tmp_path), f"Breakout-s{seed}") for seed in (0, 1)]
    for each, stopped_by in zip(jobs, ("SIGINT", None)):
        cfg = load_preset("minatar").replace(each.settings)
        os.makedirs(os.path.join(each.run_dir, "checkpoints"))
        Path(each.run_dir, "config.json").write_text(cfg.to_json())
        Path(each.run_dir, "summary.json").write_text(json.dumps(
            {"counters": {"env_steps": 798_560 if stopped_by else 1_000_000}, "interrupted_by": stopped_by}))
    assert run_sets(jobs, str(tmp_path / "results"), parallel=1, collect=True) == {"Breakout-s1": jobs[1].run_dir}
