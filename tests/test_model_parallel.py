import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from gluon_pdqn import networks
from gluon_pdqn.config import NetworkConfig
from gluon_pdqn.envs import EnvSpec
from gluon_pdqn.networks.staged import StagedNetwork, balanced_split, layer_sizes

VECTOR = EnvSpec("v", (4,), np.dtype(np.float32), (4,), 1, 3, False)
IMAGE = EnvSpec("i", (4, 84, 84), np.dtype(np.uint8), (84, 84), 4, 6, True)


def twin_networks(spec, cfg):
    """Two networks with equal weights; the second is then split over devices."""
    a = networks.build(cfg, spec, prefix="a_")
    b = networks.build(cfg, spec, prefix="b_")
    x = _inputs(spec)
    for net in (a, b):
        net.initialize(mx.init.Xavier(), ctx=mx.cpu(0))
        net(x)
    for (_, pa), (_, pb) in zip(sorted(a._collect_params_with_prefix().items()),
                                sorted(b._collect_params_with_prefix().items())):
        pb.set_data(pa.data())
    return a, b


def _inputs(spec, batch=8):
    rng = np.random.default_rng(0)
    if spec.obs_dtype == np.uint8:
        return mx.nd.array(rng.integers(0, 256, (batch,) + spec.obs_shape), dtype=np.uint8)
    return mx.nd.array(rng.normal(size=(batch,) + spec.obs_shape), dtype=np.float32)


def test_balanced_split_puts_the_cnn_convolutions_and_dense_head_on_separate_devices():
    cnn = networks.build(NetworkConfig(name="nature_cnn"), IMAGE, prefix="c_")
    cnn.initialize()
    cnn(_inputs(IMAGE, 1))
    sizes = layer_sizes(cnn)
    cut = balanced_split(sizes, 2)
    names = [type(layer).__name__ for layer in cnn.layers()]
    assert names[:cut[0]] == ["Conv2D", "Conv2D", "Conv2D", "Flatten"]
    assert names[cut[0]:] == ["Dense", "QHead"]
    assert balanced_split([5, 5, 5, 5], 2) == [2] and balanced_split([1, 1, 10, 1], 3) in ([2, 3], [1, 2])


@pytest.mark.parametrize("spec,cfg", [(VECTOR, NetworkConfig(name="mlp", hidden=(16, 16, 8), dueling=True)),
                                      (IMAGE, NetworkConfig(name="nature_cnn"))])
@pytest.mark.parametrize("hybridize", [False, True])
@pytest.mark.parametrize("microbatches", [1, 2])
def test_split_network_gives_the_same_outputs_and_gradients(spec, cfg, hybridize, microbatches):
    whole, split = twin_networks(spec, cfg)
    if hybridize:
        whole.hybridize(static_alloc=True, static_shape=True)
    cuts = balanced_split(layer_sizes(split), 2)
    staged = StagedNetwork(split, [mx.cpu(0), mx.cpu(1)], cuts, microbatches=microbatches, hybridize=hybridize)
    x = _inputs(spec)
    head_grad = mx.nd.array(np.random.default_rng(1).normal(size=(8, spec.n_actions)))
    with autograd.record():
        expected = whole(x)
    expected.backward(head_grad)
    with autograd.record():
        got = staged(x)
    assert got.context == mx.cpu(1)
    got.backward(head_grad.as_in_context(mx.cpu(1)))
    np.testing.assert_allclose(got.asnumpy(), expected.asnumpy(), rtol=1e-4, atol=1e-5)
    devices = set()
    for (name, pa), (_, pb) in zip(sorted(whole._collect_params_with_prefix().items()),
                                   sorted(split._collect_params_with_prefix().items())):
        devices.add(pb.list_ctx()[0])
        np.testing.assert_allclose(pb.list_grad()[0].asnumpy(), pa.grad().asnumpy(), rtol=1e-3, atol=1e-5,
                                   err_msg=name)
    assert devices == {mx.cpu(0), mx.cpu(1)}


@pytest.mark.parametrize("spec,overrides", [
    (VECTOR, {"network.hidden": "32,32", "optim.name": "adam", "optim.max_grad_norm": 0.05}),
    (VECTOR, {"network.hidden": "32,32,16", "run.microbatches": 2, "network.dueling": True}),
    (IMAGE, {"network.name": "nature_cnn", "optim.name": "rmsprop"}),
    (VECTOR, {"network.hidden": "32,32", "agent.algo": "c51", "agent.v_min": -2.0, "agent.v_max": 2.0}),
    (VECTOR, {"network.hidden": "32,32", "agent.algo": "qr-dqn", "agent.quantiles": 8, "network.dueling": True}),
    (VECTOR, {"network.hidden": "32,32", "network.noisy": True, "agent.algo": "c51", "agent.v_min": -2.0,
              "agent.v_max": 2.0}),
])
def test_model_parallel_steps_equal_single_device_steps(spec, overrides, tmp_path):
    from gluon_pdqn.config import Config
    from gluon_pdqn.learners import ModelParallelLearner, SingleLearner
    from tests_helpers import a_batch

    cfg = Config().replace({**overrides, "replay.batch_size": 16})
    single = SingleLearner(cfg, spec, mx.cpu(0))
    model = ModelParallelLearner(cfg.replace({"run.mode": "model"}), spec, [mx.cpu(0), mx.cpu(1)])
    single.save(str(tmp_path))
    model.load(str(tmp_path), with_optimizer=False)
    for seed in range(3):
        batch = a_batch(spec, seed=seed)
        a, b = single.step(batch), model.step(batch)
        assert b.grad_norm == pytest.approx(a.grad_norm, rel=1e-4)
    (tmp_path / "after").mkdir()
    model.save(str(tmp_path / "after"))  # a model-mode checkpoint holds the same parameter names
    reference = SingleLearner(cfg, spec, mx.cpu(0))
    reference.load(str(tmp_path / "after"), with_optimizer=False)
    for (name, p), (_, q) in zip(sorted(single.online._collect_params_with_prefix().items()),
                                 sorted(reference.online._collect_params_with_prefix().items())):
        np.testing.assert_allclose(q.data().asnumpy(), p.data().asnumpy(), rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(model.q_values(batch.obs), single.q_values(batch.obs), rtol=1e-4, atol=1e-4)


def test_a_user_split_is_checked():
    from gluon_pdqn.config import Config
    from gluon_pdqn.errors import UserError
    from gluon_pdqn.learners import ModelParallelLearner

    cfg = Config().replace({"run.mode": "model", "run.model_split": "7"})
    with pytest.raises(UserError, match="model_split"):
        ModelParallelLearner(cfg, VECTOR, [mx.cpu(0), mx.cpu(1)])
    learner = ModelParallelLearner(cfg.replace({"run.model_split": "2"}), VECTOR, [mx.cpu(0), mx.cpu(1)])
    assert learner.cuts == [2] and learner.stage_sizes()[1] == 64 * 3 + 3  # the head alone
