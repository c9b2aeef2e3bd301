import os

import mxnet as mx
import numpy as np
import pytest

from gluon_pdqn import checkpoint
from gluon_pdqn.config import load_preset
from gluon_pdqn.errors import TrainingStopped, UserError
from gluon_pdqn.run.loop import Training
from gluon_pdqn.replay.buffer import FIRST, LAST

SMALL = {"run.eval_every": 0, "run.checkpoint_every": 0, "run.log_every": 250, "replay.learning_starts": 300,
         "replay.capacity": 5000, "network.hidden": "16,16", "agent.train_every": 2, "agent.updates_per_train": 1,
         "agent.target_update_every": 50}


def small_cfg(**extra):
    return load_preset("cartpole").replace({**SMALL, **{k.replace("__", "."): v for k, v in extra.items()}})


def final_params(run_dir):
    return mx.nd.load(os.path.join(checkpoint.resolve(run_dir), "params.params"))


@pytest.mark.parametrize("variant", [
    {"env__num_envs": 2, "replay__prioritized": True, "replay__n_step": 3},
    {"env__num_envs": 1, "optim__name": "rmsprop"},
    {"env__num_envs": 2, "replay__prioritized": True, "run__overlap_acting": True},
    {"env__num_envs": 2, "network__noisy": True, "agent__algo": "c51"},  # the noise's generator is resumed too
])
def test_resumed_run_ends_with_identical_parameters(tmp_path, variant):
    total = 1600
    straight = tmp_path / "straight"
    straight.mkdir()
    Training(small_cfg(run__total_env_steps=total, **variant), str(straight)).run()

    halves = tmp_path / "halves"
    halves.mkdir()
    first = Training(small_cfg(run__total_env_steps=total, **variant), str(halves)).run(stop_at=total // 2)
    assert first.counters["env_steps"] >= total // 2
    resumed = Training(small_cfg(run__total_env_steps=total, **variant), str(halves),
                       resume_bundle=checkpoint.resolve(str(halves))).run()
    assert resumed.counters["env_steps"] >= total and not resumed.notes

    a, b = final_params(str(straight)), final_params(str(halves))
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name].asnumpy(), b[name].asnumpy(), err_msg=name)


def test_autoreset_steps_are_not_stored_as_transitions(tmp_path):
    cfg = small_cfg(run__total_env_steps=900, env__num_envs=3)
    training = Training(cfg, str(tmp_path))
    summary = training.run()
    replay, episodes = training.replay, summary.counters["episodes"]
    flags = np.concatenate([replay.flags[e, :replay.written[e]] for e in range(3)])
    assert (flags & LAST != 0).sum() == episodes
    assert (flags & FIRST != 0).sum() == episodes + 3
    # One slot per first observation and one per stored step: the reset steps added none of their own.
    assert replay.written.sum() == 3 + episodes + summary.counters["env_steps"]
    assert episodes > 10


def test_metric_files_are_written(tmp_path):
    Training(small_cfg(run__total_env_steps=1000, run__eval_every=500, run__eval_episodes=3), str(tmp_path)).run()
    for name in ("metrics.csv", "episodes.csv", "eval.csv", "summary.json", "devices.csv"):
        assert os.path.getsize(tmp_path / name) > 0, name
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in ("env_steps", "learner_steps", "charts/env_steps_per_s", "charts/updates_per_s",
                   "losses/td_loss", "values/mean_q", "charts/episodic_return"):
        assert column in header
    assert len((tmp_path / "eval.csv").read_text().splitlines()) == 3  # header + 2 evaluations
    assert os.listdir(tmp_path / "tensorboard")


def test_repeated_non_finite_updates_stop_with_a_checkpoint_of_the_last_good_parameters(tmp_path):
    """A network whose outputs overflow (finite but huge observations) has NaN gradients: the run stops and keeps
    its work, with the parameters of the last applied update, and a resumed run continues from there."""
    import toy_envs  # noqa: F401

    cfg = small_cfg(env__id="toy_envs:HugeObservation-v0", run__total_env_steps=5000, run__checkpoint_every=200,
                    replay__learning_starts=100, run__max_nonfinite_updates=5, replay__capacity=400)
    with pytest.raises(TrainingStopped, match="5 consecutive updates had NaN .*last good parameters in checkpoint "
                                              ".*ckpt-0000000003"):
        Training(cfg, str(tmp_path)).run()
    bundle = checkpoint.resolve(str(tmp_path))
    state = checkpoint.read_state(bundle)
    assert state["counters"]["skipped_updates"] == 5 and state["counters"]["env_steps"] > 300
    params = mx.nd.load(os.path.join(bundle, "params.params"))
    assert all(np.isfinite(p.asnumpy()).all() for p in params.values())  # skipped updates changed nothing
    resumed = Training(cfg, str(tmp_path), resume_bundle=bundle)
    assert resumed.counters.env_steps == state["counters"]["env_steps"]
    with pytest.raises(TrainingStopped):  # (its replay still holds the huge observations)
        resumed.run()
    assert checkpoint.read_state(checkpoint.resolve(str(tmp_path)))["counters"]["env_steps"] > \
        state["counters"]["env_steps"]


def test_only_complete_checkpoints_are_loaded_and_old_ones_pruned(tmp_path):
    Training(small_cfg(run__total_env_steps=1000, run__checkpoint_every=200, run__keep_checkpoints=2),
             str(tmp_path)).run()
    bundles = checkpoint.list_complete(str(tmp_path))
    assert [os.path.basename(b) for b in bundles] == ["ckpt-000000000800", "ckpt-000000001000"]
    os.remove(os.path.join(bundles[-1], checkpoint.MARKER))
    assert checkpoint.resolve(str(tmp_path)) == bundles[0]
    with pytest.raises(UserError, match="incomplete"):
        checkpoint.resolve(bundles[-1])


def test_a_corrupt_noise_generator_in_a_checkpoint_is_a_one_line_error(tmp_path):
    cfg = small_cfg(run__total_env_steps=400, network__noisy=True)
    Training(cfg, str(tmp_path)).run()
    bundle = checkpoint.resolve(str(tmp_path))
    with open(os.path.join(bundle, "noise_rng.json"), "w") as f:
        f.write('{"bit_generator": "PCG64", "state": "not a state"}')
    with pytest.raises(UserError, match="noise_rng.json is corrupt"):
        Training(cfg, str(tmp_path), resume_bundle=bundle)
