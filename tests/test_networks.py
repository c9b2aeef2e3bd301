import mxnet as mx
import numpy as np
import pytest

from gluon_pdqn import networks
from gluon_pdqn.config import NetworkConfig
from gluon_pdqn.envs import EnvSpec

VECTOR = EnvSpec("v", (4,), np.dtype(np.float32), (4,), 1, 3, False)
IMAGE = EnvSpec("i", (4, 84, 84), np.dtype(np.uint8), (84, 84), 4, 6, True)


def _inputs(spec, batch=5):
    rng = np.random.default_rng(0)
    if spec.obs_dtype == np.uint8:
        return mx.nd.array(rng.integers(0, 256, (batch,) + spec.obs_shape), dtype=np.uint8)
    return mx.nd.array(rng.normal(size=(batch,) + spec.obs_shape), dtype=np.float32)


@pytest.mark.parametrize("spec,name", [(VECTOR, "mlp"), (IMAGE, "nature_cnn")])
@pytest.mark.parametrize("dueling", [False, True])
def test_hybridized_and_imperative_outputs_agree(spec, name, dueling):
    net = networks.build(NetworkConfig(name=name, dueling=dueling, hidden=(32, 16)), spec, prefix="n_")
    net.initialize(mx.init.Xavier())
    x = _inputs(spec)
    imperative = net(x).asnumpy()
    net.hybridize(static_alloc=True, static_shape=True)
    hybrid = net(x).asnumpy()
    assert imperative.shape == (5, spec.n_actions)
    np.testing.assert_allclose(imperative, hybrid, rtol=1e-5, atol=1e-6)


def test_auto_picks_a_cnn_for_images_and_an_mlp_otherwise():
    assert networks.resolve_name(NetworkConfig(name="auto"), IMAGE) == "nature_cnn"
    assert networks.resolve_name(NetworkConfig(name="auto"), VECTOR) == "mlp"


def test_dueling_head_centres_the_advantages():
    net = networks.build(NetworkConfig(name="mlp", dueling=True, hidden=(8,)), VECTOR, prefix="d_")
    net.initialize(mx.init.Xavier())
    x = _inputs(VECTOR)
    q = net(x).asnumpy()
    value = net.head.value(net.body(x)).asnumpy()
    # Q = V + A - mean(A), so the mean over actions of Q is V.
    np.testing.assert_allclose(q.mean(axis=1, keepdims=True), value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dueling", [False, True])
def test_numpy_copy_of_the_mlp_gives_the_same_q_values(dueling):
    net = networks.build(NetworkConfig(name="mlp", dueling=dueling, hidden=(32, 32)), VECTOR, prefix="m_")
    net.initialize(mx.init.Xavier())
    x = _inputs(VECTOR, batch=9)
    expected = net(x).asnumpy()
    policy = networks.NumpyMLP(net)
    policy.load(np.concatenate([p.data().asnumpy().ravel() for p in policy.parameters()]))
    np.testing.assert_allclose(policy(x.asnumpy()), expected, rtol=1e-5, atol=1e-6)
