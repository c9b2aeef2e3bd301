import csv

import mxnet as mx
import numpy as np
import pytest

from gluon_pdqn.config import Config, load_preset
from gluon_pdqn.envs import EnvSpec
from gluon_pdqn.learners import EnsembleLearner
from gluon_pdqn.learners.ensemble import mixing_weights
from gluon_pdqn.run.loop import Training
from tests_helpers import a_batch

SPEC = EnvSpec("v", (4,), np.dtype(np.float32), (4,), 1, 3, False)


def test_mixing_weights_favour_better_members_and_exclude_oneself():
    w = mixing_weights(np.array([100.0, 200.0, 300.0]), temperature=100.0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert np.all(np.diag(w) == 0)
    assert w[0, 2] > w[0, 1] and w[1, 2] > w[1, 0]
    np.testing.assert_allclose(w[0, 1:], np.exp([2.0, 3.0]) / np.exp([2.0, 3.0]).sum())
    np.testing.assert_allclose(mixing_weights(np.zeros(2), 1.0), [[0, 1], [1, 0]])


def test_each_member_bootstraps_from_the_others_target_networks():
    cfg = Config().replace({"run.mode": "ensemble", "network.hidden": "16", "optim.name": "sgd",
                            "optim.learning_rate": 1e-9})
    learner = EnsembleLearner(cfg, SPEC, [mx.cpu(0), mx.cpu(1), mx.cpu(2)])
    learner.set_member_returns([0.0, 50.0, 100.0])
    batch = a_batch(SPEC, size=8)
    result = learner.step(batch)
    members = learner.members
    q = [m.online(mx.nd.array(batch.obs, ctx=m.contexts[0])).asnumpy() for m in members]
    next_q = [m.online(mx.nd.array(batch.next_obs, ctx=m.contexts[0])).asnumpy() for m in members]
    next_target = [m.target(mx.nd.array(batch.next_obs, ctx=m.contexts[0])).asnumpy() for m in members]
    rows = np.arange(8)
    td = []
    for k in range(3):
        mixed = sum(learner.weights[k, j] * next_target[j] for j in range(3))
        target = batch.rewards + batch.discounts * mixed[rows, next_q[k].argmax(axis=1)]
        td.append(np.abs(q[k][rows, batch.actions] - target))
    np.testing.assert_allclose(result.td_errors(), np.mean(td, axis=0), rtol=1e-4, atol=1e-4)


def test_ensemble_mode_trains_and_logs_each_member(tmp_path):
    cfg = load_preset("cartpole").replace({
        "run.mode": "ensemble", "run.ctx": "cpu:0,cpu:1", "run.total_env_steps": 2000, "run.eval_every": 1000,
        "run.eval_episodes": 2, "replay.learning_starts": 300, "agent.train_every": 4,
        "agent.updates_per_train": 1, "network.hidden": "16,16", "run.ensemble_acting": "member"})
    training = Training(cfg, str(tmp_path))
    learner, picked = training.learner, []
    start_episode = learner.episode_started

    def record(env_index):
        start_episode(env_index)
        picked.append(int(learner.acting_member[env_index]))
    training.collector.episode_started = record  # (the hook the builder gave the vector env)
    summary = training.run()
    assert summary.counters["learner_steps"] > 0
    rows = list(csv.DictReader(open(tmp_path / "members.csv")))
    assert [r["member"] for r in rows] == ["0", "1", "0", "1"]
    assert abs(sum(float(r["weight"]) for r in rows[:2]) - 1.0) < 1e-6
    # Each episode acts with one member, drawn afresh: over ~100 episodes both members act.
    assert len(picked) >= 20 and set(picked) == {0, 1}
    obs = np.random.default_rng(0).normal(size=(1, 4)).astype(np.float32)
    for member, q in enumerate(learner.member_q_functions()):
        learner.acting_member[0] = member
        np.testing.assert_allclose(learner.q_values(obs), q(obs), rtol=1e-5)


@pytest.mark.parametrize("acting", ["mean", "member"])
def test_ensemble_resumes_exactly(tmp_path, acting):
    overrides = {"run.mode": "ensemble", "run.ctx": "cpu:0,cpu:1", "run.total_env_steps": 1200,
                 "run.eval_every": 400, "run.eval_episodes": 2, "replay.learning_starts": 200,
                 "agent.train_every": 4, "agent.updates_per_train": 1, "network.hidden": "16,16",
                 "run.ensemble_acting": acting, "run.checkpoint_every": 0}
    from gluon_pdqn import checkpoint

    straight, halves = tmp_path / "a", tmp_path / "b"
    straight.mkdir(), halves.mkdir()
    cfg = load_preset("cartpole").replace(overrides)
    Training(cfg, str(straight)).run()
    Training(cfg, str(halves)).run(stop_at=600)
    Training(cfg, str(halves), resume_bundle=checkpoint.resolve(str(halves))).run()
    for k in (0, 1):
        a = mx.nd.load(str(straight / "checkpoints" / "ckpt-000000001200" / f"member{k}" / "params.params"))
        b = mx.nd.load(str(halves / "checkpoints" / "ckpt-000000001200" / f"member{k}" / "params.params"))
        for name in a:
            np.testing.assert_array_equal(a[name].asnumpy(), b[name].asnumpy(), err_msg=f"member {k} {name}")
