"""Lower precision: bf16 graphs over fp32 master weights, fp16's loss scaling, and refusals in one line."""
import mxnet as mx
import numpy as np
import pytest

from gluon_pdqn import networks
from gluon_pdqn.config import Config, NetworkConfig
from gluon_pdqn.envs import EnvSpec
from gluon_pdqn.errors import UserError
from gluon_pdqn.learners import SingleLearner
from gluon_pdqn.learners.base import DynamicLossScale
from gluon_pdqn.networks.precision import check_precision, cpu_has_bf16, lower_precision
from tests_helpers import a_batch

IMAGE = EnvSpec("i", (4, 84, 84), np.dtype(np.uint8), (84, 84), 4, 6, True)
needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has neither avx512_bf16 nor AMX")


def frames(batch=8, seed=0):
    return mx.nd.array(np.random.default_rng(seed).integers(0, 256, (batch, 4, 84, 84)), dtype=np.uint8)


def test_lowered_graphs_cast_to_the_low_precision_and_share_the_fp32_parameters():
    net = networks.build(NetworkConfig(name="nature_cnn"), IMAGE, prefix="n_")
    for precision, dtype in (("bf16", "bfloat16"), ("fp16", "float16")):
        lowered = lower_precision(net, precision)
        internals = lowered._cached_graph[1].get_internals().list_outputs()
        casts = [name for name in internals if f"amp_cast_{dtype}" in name]
        # Every one of the 10 parameters, the scaled input and the flattened features (the layers between pass
        # the low precision on). (``tojson`` would hide these casts: MXNet drops them from its JSON by default.)
        assert len(casts) >= 11 and sum("weight" in c or "bias" in c for c in casts) == 10
        assert {p.name for p in lowered.collect_params().values()} == {p.name for p in net.collect_params().values()}
        assert all(lowered.collect_params()[name] is param for name, param in net.collect_params().items())
    assert lower_precision(net, "fp32") is net


@needs_bf16
def test_bf16_forward_is_close_to_fp32_and_gradients_reach_the_fp32_weights():
    from mxnet import autograd

    net = networks.build(NetworkConfig(name="nature_cnn"), IMAGE, prefix="b_")
    net.initialize(mx.init.Xavier())
    x = frames()
    reference = net(x).asnumpy()
    lowered = lower_precision(net, "bf16")
    lowered.hybridize(static_alloc=True)
    out = lowered(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.asnumpy(), reference, atol=0.05 * np.abs(reference).max())  # 8-bit mantissa
    with autograd.record():
        loss = lowered(x).sum()
    loss.backward()
    grad = net.features[0].weight.grad()
    assert grad.dtype == np.float32 and float(grad.abs().sum().asscalar()) > 0


@needs_bf16
def test_bf16_learner_updates_fp32_master_weights_and_follows_the_fp32_learner():
    cfg = Config().replace({"network.name": "nature_cnn", "optim.learning_rate": 1e-4})
    mx.random.seed(3)
    fp32 = SingleLearner(cfg, IMAGE, mx.cpu(0))
    bf16 = SingleLearner(cfg.replace({"run.precision": "bf16"}), IMAGE, mx.cpu(0))
    for name, param in bf16.online.collect_params().items():  # the same starting weights
        param.set_data(fp32.online.collect_params()[name.replace(bf16.online.prefix, fp32.online.prefix)].data())
    bf16.sync_target()
    before = {k: v.data().asnumpy().copy() for k, v in bf16.online.collect_params().items()}
    for seed in range(3):
        batch = a_batch(IMAGE, seed=seed)
        a, b = fp32.step(batch), bf16.step(batch)
        assert b.grad_norm == pytest.approx(a.grad_norm, rel=0.05)
    for name, param in bf16.online.collect_params().items():
        assert param.data().dtype == np.float32
        moved = param.data().asnumpy() - before[name]
        reference = fp32.online.collect_params()[name.replace(bf16.online.prefix, fp32.online.prefix)].data().asnumpy()
        assert np.abs(moved).max() > 0
        # An Adam step moves a weight by about the learning rate, whatever the gradient's size, so where bf16
        # rounds a tiny gradient's sign the other way the two differ by up to 2 x 1e-4 a step; on average
        # they differ by far less than they moved.
        difference = np.abs(param.data().asnumpy() - reference)
        assert difference.max() <= 3 * 2 * 1e-4 + 1e-6
        assert difference.mean() <= 0.25 * np.abs(moved).mean(), name


def test_precisions_the_devices_cannot_run_are_refused_in_one_line():
    with pytest.raises(UserError, match="fp16 needs GPU devices"):
        check_precision("fp16", [mx.cpu(0)])
    with pytest.raises(UserError, match="bf16 runs on CPUs only"):
        check_precision("bf16", [mx.gpu(0)])
    if not cpu_has_bf16():
        with pytest.raises(UserError, match="avx512_bf16 or AMX"):
            check_precision("bf16", [mx.cpu(0)])
    check_precision("fp32", [mx.cpu(0), mx.cpu(1)])


def test_dynamic_loss_scale_halves_on_overflow_and_grows_after_a_clean_run():
    scale = DynamicLossScale(initial=1024.0, growth_interval=3)
    scale.observe(False)
    assert scale.scale == 512.0
    for _ in range(2):
        scale.observe(True)
    assert scale.scale == 512.0
    scale.observe(True)
    assert scale.scale == 1024.0
    for _ in range(20):
        scale.observe(False)
    assert scale.scale == 1.0  # never below the minimum


def test_loss_scaling_gives_the_unscaled_update_and_skips_an_overflow():
    """fp16's loss scaling, run on fp32 compute (the CPU has no fp16 kernels): the same parameters as no scaling;
    an overflowing step is skipped and halves the scale."""
    spec = EnvSpec("v", (4,), np.dtype(np.float32), (4,), 1, 2, False)
    cfg = Config().replace({"network.hidden": "16,16", "optim.max_grad_norm": 0.5})
    mx.random.seed(0)
    plain = SingleLearner(cfg, spec, mx.cpu(0))
    mx.random.seed(0)
    scaled = SingleLearner(cfg, spec, mx.cpu(0))
    scaled.loss_scale = DynamicLossScale(initial=2.0 ** 10)
    for seed in range(4):
        batch = a_batch(spec, seed=seed)
        a, b = plain.step(batch), scaled.step(batch)
        assert b.grad_norm == pytest.approx(a.grad_norm, rel=1e-5)  # the norm of the unscaled gradient
    for name, param in plain.online.collect_params().items():
        np.testing.assert_allclose(scaled.online.collect_params()[name].data().asnumpy(), param.data().asnumpy(),
                                   rtol=1e-5, atol=1e-7)
    before = {k: v.data().asnumpy().copy() for k, v in scaled.online.collect_params().items()}
    scaled.loss_scale.scale = 1e38  # the scaled gradient overflows float32
    scaled.gradients.loss_scale_array[:] = 1e38
    scaled.loss_scale._finite_in_a_row = 0
    overflowed = scaled.step(a_batch(spec, seed=9))
    assert overflowed.skipped
    for name, value in before.items():
        np.testing.assert_array_equal(scaled.online.collect_params()[name].data().asnumpy(), value)
    scaled.step(a_batch(spec, seed=10))  # the next step takes in the overflow
    assert scaled.loss_scale.scale == 5e37


def test_mode_async_refuses_lower_precision_rather_than_ignoring_it():
    with pytest.raises(UserError, match="mode async computes in fp32"):
        Config().replace({"run.mode": "async", "run.precision": "bf16"})
