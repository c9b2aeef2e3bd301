import mxnet as mx
import numpy as np
import pytest

from gluon_pdqn.config import Config
from gluon_pdqn.envs import EnvSpec
from gluon_pdqn.errors import UserError
from gluon_pdqn.build import make_learner
from gluon_pdqn.learners import DataParallelLearner, SingleLearner
from tests_helpers import a_batch

SPEC = EnvSpec("v", (4,), np.dtype(np.float32), (4,), 1, 3, False)
IMAGE = EnvSpec("i", (4, 84, 84), np.dtype(np.uint8), (84, 84), 4, 4, True)


def params_on(learner, ctx):
    return {k: v.data(ctx).asnumpy() for k, v in learner.online.collect_params().items()}


@pytest.mark.parametrize("devices", [2, 4])
@pytest.mark.parametrize("spec,overrides", [
    (SPEC, {"network.hidden": "32,32", "optim.name": "adam"}),
    (SPEC, {"network.hidden": "32,32", "optim.name": "sgd", "optim.max_grad_norm": 0.05}),  # clipping across devices
    (IMAGE, {"network.name": "nature_cnn", "optim.name": "rmsprop"}),
    # Distributional targets and losses split over devices too (dueling C51, QR-DQN).
    (SPEC, {"network.hidden": "32,32", "agent.algo": "c51", "network.dueling": True, "agent.v_min": -2.0,
            "agent.v_max": 2.0}),
    (SPEC, {"network.hidden": "32,32", "agent.algo": "qr-dqn", "agent.quantiles": 8}),
    # Noisy layers: one draw of noise for every device, from the same Generator as the single learner's.
    (SPEC, {"network.hidden": "32,32", "network.noisy": True}),
])
def test_data_parallel_step_equals_the_single_device_step_on_the_whole_batch(devices, spec, overrides, tmp_path):
    cfg = Config().replace(overrides)
    contexts = [mx.cpu(i) for i in range(devices)]
    mx.random.seed(7)
    single = SingleLearner(cfg, spec, mx.cpu(0))
    parallel = DataParallelLearner(cfg.replace({"run.mode": "data"}), spec, contexts)
    single.save(str(tmp_path))
    parallel.load(str(tmp_path), with_optimizer=False)  # the same starting weights
    for seed in range(3):
        batch = a_batch(spec, seed=seed)
        a, b = single.step(batch), parallel.step(batch)
        assert b.grad_norm == pytest.approx(a.grad_norm, rel=1e-4)
        np.testing.assert_allclose(b.td_errors(), a.td_errors(), rtol=1e-4, atol=1e-5)
    reference = params_on(single, mx.cpu(0))
    for ctx in contexts:
        for name, value in params_on(parallel, ctx).items():
            np.testing.assert_allclose(value, reference[name], rtol=1e-4, atol=1e-5, err_msg=f"{ctx} {name}")
        # and every device holds exactly the same parameters
        np.testing.assert_array_equal(params_on(parallel, ctx)[name], params_on(parallel, contexts[0])[name])


def test_data_mode_needs_two_devices_and_a_kvstore_the_build_has():
    cfg = Config().replace({"run.mode": "data"})
    with pytest.raises(UserError, match="two or more"):
        make_learner(cfg, SPEC, [mx.cpu(0)])
    if not mx.runtime.Features().is_enabled("NCCL"):
        with pytest.raises(UserError, match="NCCL"):
            make_learner(cfg.replace({"run.kvstore": "nccl"}), SPEC, [mx.cpu(0), mx.cpu(1)])


def test_data_mode_trains_and_records_per_device_figures(tmp_path):
    import csv

    from gluon_pdqn.config import load_preset
    from gluon_pdqn.run.loop import Training

    cfg = load_preset("cartpole").replace({
        "run.mode": "data", "run.ctx": "cpu:0,cpu:1", "run.total_env_steps": 1500, "run.eval_every": 0,
        "run.log_every": 250, "replay.learning_starts": 300, "agent.train_every": 4, "agent.updates_per_train": 1,
        "network.hidden": "16,16"})
    summary = Training(cfg, str(tmp_path)).run()
    assert summary.counters["learner_steps"] == 1500 // 4 - 299 // 4
    rows = list(csv.DictReader(open(tmp_path / "devices.csv")))
    assert {r["device"] for r in rows} == {"cpu:0", "cpu:1"}
    for row in rows:
        assert float(row["forward_backward_ms"]) > 0 and float(row["idle_ms"]) >= 0
        assert float(row["step_ms"]) >= float(row["forward_backward_ms"])
