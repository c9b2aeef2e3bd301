import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from gluon_pdqn.config import Config
from gluon_pdqn.envs import EnvSpec
from gluon_pdqn.errors import UserError
from gluon_pdqn.learners import SingleLearner
from gluon_pdqn.replay import Batch

SPEC = EnvSpec("v", (4,), np.dtype(np.float32), (4,), 1, 2, False)


def make(cfg=None, seed=0):
    mx.random.seed(seed)
    return SingleLearner(cfg or Config().replace({"network.hidden": "16,16", "optim.learning_rate": 0.01}),
                         SPEC, mx.cpu(0))


def a_batch(rewards=None, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return Batch(obs=rng.normal(size=(size, 4)).astype(np.float32), actions=rng.integers(0, 2, size).astype(np.int32),
                 rewards=(np.ones(size) if rewards is None else rewards).astype(np.float32),
                 next_obs=rng.normal(size=(size, 4)).astype(np.float32), discounts=np.zeros(size, np.float32),
                 weights=np.ones(size, np.float32), indices=np.arange(size))


def params_of(learner):
    return {k: v.data().asnumpy().copy() for k, v in learner.online.collect_params().items()}


def test_updates_fit_a_fixed_target():
    learner = make()
    batch = a_batch()  # terminal transitions with reward 1: Q(s, a) should go to 1
    first = learner.step(batch).loss()
    for _ in range(200):
        result = learner.step(batch)
    assert result.loss() < 0.05 * first
    np.testing.assert_allclose(result.td_errors(), 0.0, atol=0.1)
    assert learner.learner_steps == 201


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop_epsilon_outside_root"])
def test_non_finite_gradient_skips_the_update(optimizer):
    outside = optimizer == "rmsprop_epsilon_outside_root"
    learner = make(Config().replace({"network.hidden": "16,16", "optim.name": "rmsprop" if outside else optimizer,
                                     "optim.rmsprop_epsilon_outside_root": outside}))
    before = params_of(learner)
    rewards = np.ones(32)
    rewards[3] = np.nan
    result = learner.step(a_batch(rewards))
    assert result.skipped and not np.isfinite(result.grad_norm)
    # Adam skips on the device without waiting, so the step was counted before its outcome was known.
    assert result.counted == (optimizer == "adam")
    assert learner.learner_steps == (1 if optimizer == "adam" else 0)
    for name, value in params_of(learner).items():
        np.testing.assert_array_equal(value, before[name])
    # The next finite step updates as usual.
    assert not learner.step(a_batch()).skipped
    assert any(not np.array_equal(value, before[name]) for name, value in params_of(learner).items())


def test_clipping_on_the_device_equals_clipping_in_python():
    """Adam's device-side clip and skip (no wait) gives the parameters of MXNet's Adam after a Python-side clip."""
    cfg = Config().replace({"network.hidden": "16,16", "optim.max_grad_norm": 0.5})
    on_device, in_python = make(cfg), make(cfg)
    in_python.gradients.trainers = [gluon.Trainer(in_python.online.collect_params(),
                                        mx.optimizer.Adam(learning_rate=cfg.optim.learning_rate), update_on_kvstore=False)]
    assert on_device.gradients.skips_on_device() and not in_python.gradients.skips_on_device()
    for seed in range(4):
        batch = a_batch(rewards=np.full(32, 50.0), seed=seed)
        norms = [learner.step(batch).grad_norm for learner in (on_device, in_python)]
        assert norms[0] == pytest.approx(norms[1], rel=1e-5) and norms[0] > 0.5  # the clip is active
    for name, value in params_of(in_python).items():
        np.testing.assert_allclose(params_of(on_device)[name.replace(in_python.online.prefix, on_device.online.prefix)],
                                   value, rtol=1e-4, atol=1e-6)


def test_gradient_norm_is_clipped():
    cfg = Config().replace({"network.hidden": "16,16", "optim.name": "sgd", "optim.learning_rate": 1.0,
                            "optim.max_grad_norm": 0.01})
    learner = make(cfg)
    before = params_of(learner)
    result = learner.step(a_batch(rewards=np.full(32, 100.0)))
    assert result.grad_norm > 0.01
    moved = np.sqrt(sum(((params_of(learner)[k] - v) ** 2).sum() for k, v in before.items()))
    assert moved == pytest.approx(0.01, rel=1e-3)  # SGD with lr 1 moves by exactly the clipped norm


def test_target_network_follows_on_schedule():
    cfg = Config().replace({"network.hidden": "16,16", "agent.target_update_every": 3})
    learner = make(cfg)
    for step in range(1, 7):
        learner.step(a_batch(seed=step))
        same = all(np.array_equal(learner.target.collect_params()[k.replace("online_", "target_")].data().asnumpy(),
                                  v.data().asnumpy()) for k, v in learner.online.collect_params().items())
        assert same == (step % 3 == 0)


def test_save_and_load_continue_exactly(tmp_path):
    for optimizer in ("adam", "rmsprop", "rmsprop-outside", "sgd"):
        cfg = Config().replace({"network.hidden": "16,16", "optim.name": optimizer.split("-")[0],
                                "optim.momentum": 0.9,
                                "optim.rmsprop_epsilon_outside_root": optimizer.endswith("outside")})
        straight, resumed = make(cfg, seed=1), make(cfg, seed=2)
        for i in range(5):
            straight.step(a_batch(seed=i))
        directory = tmp_path / optimizer
        directory.mkdir()
        straight.save(str(directory))
        resumed.load(str(directory))
        for i in range(5, 9):
            straight.step(a_batch(seed=i))
            resumed.step(a_batch(seed=i))
        for name, value in params_of(straight).items():
            np.testing.assert_array_equal(params_of(resumed)[name], value, err_msg=f"{optimizer}: {name}")


def test_a_checkpoint_of_the_first_rmsprop_outside_the_root_resumes_exactly(tmp_path):
    """The centred state's second array was the mean itself (layout 1); it is the mean over beta1 now, and a
    checkpoint of layout 1 is read as such. Such a checkpoint is made here from one of today's."""
    import json

    cfg = Config().replace({"network.hidden": "16,16", "optim.name": "rmsprop",
                            "optim.rmsprop_epsilon_outside_root": True})
    straight, resumed = make(cfg, seed=1), make(cfg, seed=2)
    for i in range(5):
        straight.step(a_batch(seed=i))
    straight.save(str(tmp_path))
    beta1 = straight.trainers[0]._optimizer.beta1
    arrays = mx.nd.load(str(tmp_path / "optimizer.params"))
    means = [name for name in arrays if name.endswith(".1")]
    assert means and all(abs(arrays[name]).sum() > 0 for name in means)
    mx.nd.save(str(tmp_path / "optimizer.params"),
               {name: value * beta1 if name in means else value for name, value in arrays.items()})
    meta = json.loads((tmp_path / "optimizer.json").read_text())
    assert meta.pop("state_layout") == 2
    (tmp_path / "optimizer.json").write_text(json.dumps(meta))
    resumed.load(str(tmp_path))
    for i in range(5, 9):
        straight.step(a_batch(seed=i))
        resumed.step(a_batch(seed=i))
    for name, value in params_of(straight).items():
        np.testing.assert_allclose(params_of(resumed)[name], value, rtol=1e-5, atol=1e-7, err_msg=name)


def test_loading_another_network_is_a_clear_error(tmp_path):
    make().save(str(tmp_path))
    other = SingleLearner(Config().replace({"network.hidden": "8"}), SPEC, mx.cpu(0))
    with pytest.raises(UserError, match="another network"):
        other.load(str(tmp_path))


def test_saved_files_hold_no_pickle(tmp_path):
    learner = make()
    learner.step(a_batch())
    learner.save(str(tmp_path))
    for name in os.listdir(tmp_path):
        data = (tmp_path / name).read_bytes()
        assert not data.startswith(b"\x80"), f"{name} looks like a pickle"


@pytest.mark.parametrize("hidden", [8, 300])  # 300 x 300 weights take the one-by-one kernel (LARGE), 8 the multi
def test_multi_tensor_adam_takes_the_same_steps_as_mxnet_adam(hidden):
    from mxnet import autograd, gluon

    from gluon_pdqn.learners.optimizers import MultiTensorAdam

    assert (hidden * hidden >= MultiTensorAdam.LARGE) == (hidden == 300)
    results = []
    for optimizer in (mx.optimizer.Adam(learning_rate=0.01, epsilon=1e-6),
                      MultiTensorAdam(learning_rate=0.01, epsilon=1e-6)):
        mx.random.seed(0)
        net = gluon.nn.HybridSequential()
        net.add(gluon.nn.Dense(hidden, activation="relu"), gluon.nn.Dense(hidden, activation="relu"), gluon.nn.Dense(3))
        net.initialize(mx.init.Xavier())
        trainer = gluon.Trainer(net.collect_params(), optimizer, update_on_kvstore=False)
        x = mx.nd.array(np.random.default_rng(0).normal(size=(16, 5)))
        for _ in range(20):
            with autograd.record():
                loss = (net(x) ** 2).mean()
            loss.backward()
            trainer.step(1)
        results.append([p.data().asnumpy() for p in net.collect_params().values()])
    for plain, fused in zip(*results):
        np.testing.assert_allclose(fused, plain, rtol=1e-4, atol=1e-5)  # same algorithm, other float order


def test_overlapped_acting_uses_its_snapshot_until_refreshed():
    learner = make(Config().replace({"network.hidden": "16,16", "optim.learning_rate": 0.01,
                                     "run.overlap_acting": True}))
    obs = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
    before = learner.q_values(obs)
    for _ in range(5):
        learner.step(a_batch(rewards=np.full(32, 5.0)))
    np.testing.assert_array_equal(learner.q_values(obs), before)  # updates are not seen while acting
    learner.refresh_policy()
    after = learner.q_values(obs)
    assert not np.allclose(after, before)
    online = learner.online(mx.nd.array(obs)).asnumpy()
    np.testing.assert_allclose(after, online, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shapes", [[(3, 5)], [(3, 5), (7,), (600, 500)]])  # a parameter alone, small ones together
@pytest.mark.parametrize("centered", [True, False])
def test_rmsprop_with_epsilon_outside_the_root_steps_as_pytorch_defines_it(centered, shapes):
    """g / (sqrt(v) + eps) with v the decayed mean square (minus the squared decayed mean, centred), no bias
    correction: PyTorch's RMSprop (the MinAtar reference DQN's); MXNet's puts eps under the root. The gradient's
    rescale (the clip, applied by the optimizer) is read once a step."""
    from gluon_pdqn.learners.optimizers import RMSPropEpsilonOutsideRoot

    rng = np.random.default_rng(0)
    lr, decay, eps = 0.01, 0.95, 0.01
    optimizer = RMSPropEpsilonOutsideRoot(learning_rate=lr, gamma1=decay, epsilon=eps, centered=centered)
    assert 7 * 5 < RMSPropEpsilonOutsideRoot.LARGE <= 600 * 500
    weights = [mx.nd.array(rng.normal(size=shape)) for shape in shapes]
    states = [optimizer.create_state(k, w) for k, w in enumerate(weights)]
    expected = [w.asnumpy().astype(np.float64) for w in weights]
    squares, means = [0.0] * len(shapes), [0.0] * len(shapes)
    for step in range(6):
        grads = [rng.normal(scale=10.0 ** -rng.integers(1, 4), size=shape) for shape in shapes]
        optimizer.rescale_grad = scale = 0.5 if step % 2 else 1.0
        optimizer.update(list(range(len(shapes))), weights, [mx.nd.array(g) for g in grads], states)
        for k, grad in enumerate(grads):
            g = scale * grad
            squares[k] = decay * squares[k] + (1 - decay) * g * g
            means[k] = decay * means[k] + (1 - decay) * g
            variance = squares[k] - means[k] * means[k] if centered else squares[k]
            expected[k] -= lr * g / (np.sqrt(variance) + eps)
            np.testing.assert_allclose(weights[k].asnumpy(), expected[k], rtol=1e-5, atol=1e-7,
                                       err_msg=f"step {step}, parameter {k}")


def test_the_epsilon_placement_changes_the_step_tenfold_for_small_gradients():
    """The reason the option exists: at DQN's epsilon 0.01 and a gradient of 1e-3, the first step outside the root
    is about 10x the step under it."""
    from gluon_pdqn.learners.optimizers import make_optimizer

    steps = {}
    for outside in (False, True):
        cfg = Config().replace({"network.hidden": "16,16", "optim.name": "rmsprop", "optim.learning_rate": 2.5e-4,
                                "optim.rmsprop_epsilon_outside_root": outside})
        optimizer = make_optimizer(cfg.optim)
        weight = mx.nd.zeros((4,))
        optimizer.update(0, weight, mx.nd.full((4,), 1e-3), optimizer.create_state(0, weight))
        steps[outside] = abs(float(weight[0].asscalar()))
    assert 9 < steps[True] / steps[False] < 11, steps


def test_rmsprop_with_epsilon_outside_the_root_is_refused_on_parameter_servers():
    from gluon_pdqn.learners.optimizers import make_optimizer

    cfg = Config().replace({"optim.name": "rmsprop", "optim.rmsprop_epsilon_outside_root": True})
    with pytest.raises(UserError, match="parameter servers"):
        make_optimizer(cfg.optim, on_kvstore_servers=True)
