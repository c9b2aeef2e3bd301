"""C51 and QR-DQN: the target projection, the losses and the expected Q-values, on hand-computed numbers."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from gluon_pdqn import networks
from gluon_pdqn.config import AgentConfig, Config, NetworkConfig
from gluon_pdqn.distributional import ReturnModel
from gluon_pdqn.envs import EnvSpec
from gluon_pdqn.errors import UserError
from gluon_pdqn.losses import DistributionalLoss, DistributionalTDTarget

C51 = ReturnModel("c51", 3, -1.0, 1.0)  # support -1, 0, 1


class Passthrough(gluon.HybridBlock):
    """A "network" whose outputs are its inputs: the test chooses the outputs directly."""

    def hybrid_forward(self, F, x):
        return x


def scalars(actions, rewards, discounts, weights=None):
    weights = np.ones(len(actions)) if weights is None else weights
    return mx.nd.array(np.stack([actions, rewards, discounts, weights], axis=1))


def logits(*probabilities):
    return np.log(np.asarray(probabilities, dtype=np.float64))


@pytest.mark.parametrize("hybridize", [False, True])
def test_c51_projects_the_shifted_distribution_onto_the_support(hybridize):
    target = DistributionalTDTarget(None, Passthrough(), C51, n_actions=1, double_q=False)
    if hybridize:
        target.hybridize()
    next_outputs = mx.nd.array(np.stack([logits(0.2, 0.5, 0.3)] * 3))
    # r = 0.5, discount 1: atoms -1, 0, 1 move to -0.5, 0.5, 1.5 (clipped to 1), positions 0.5, 1.5, 2.
    # Terminal (discount 0), r = 0: all mass on z = 0. r = -3, discount 0.5: everything clips to -1.
    m = target(next_outputs, scalars([0, 0, 0], [0.5, 0.0, -3.0], [1.0, 0.0, 0.5])).asnumpy()
    np.testing.assert_allclose(m[0], [0.1, 0.35, 0.55], atol=1e-6)
    np.testing.assert_allclose(m[1], [0.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(m[2], [1.0, 0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("hybridize", [False, True])
def test_c51_projection_is_the_triangle_kernel_on_many_random_transitions(hybridize):
    """The one-hot form of the projection against sum_i p_i max(0, 1 - |b_i - j|) in numpy, 51 atoms on
    [-10, 10]: rewards that land between atoms, exactly on them (integer rewards, discount 1 or 0), and beyond
    both ends of the support."""
    model = ReturnModel("c51", 51, -10.0, 10.0)
    target = DistributionalTDTarget(None, Passthrough(), model, n_actions=1, double_q=False)
    if hybridize:
        target.hybridize()
    rng = np.random.default_rng(3)
    size = 256
    rewards = np.concatenate([rng.normal(0, 6, size // 2), rng.integers(-12, 13, size // 2)]).astype(np.float32)
    discounts = rng.choice([0.0, 0.5, 0.97, 1.0], size).astype(np.float32)
    next_logits = rng.normal(0, 2, (size, 51)).astype(np.float32)
    m = target(mx.nd.array(next_logits), scalars(np.zeros(size), rewards, discounts)).asnumpy()
    p = np.exp(next_logits - next_logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    support = np.arange(51, dtype=np.float32) * np.float32(model.delta) + np.float32(-10.0)  # as the graph makes it
    shifted = np.clip(rewards[:, None] + discounts[:, None] * support[None, :], -10.0, 10.0)
    position = (shifted + np.float32(10.0)) / np.float32(model.delta)
    closeness = np.maximum(0.0, 1.0 - np.abs(position[:, :, None] - np.arange(51)[None, None, :]))
    expected = (p[:, :, None] * closeness).sum(axis=1)
    np.testing.assert_allclose(m, expected, atol=1e-6)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-5)


def test_double_c51_takes_the_online_networks_best_action():
    online, target = Passthrough(), Passthrough()
    block = DistributionalTDTarget(online, target, C51, n_actions=2, double_q=True)
    # Both networks see the same outputs here: action 1 has the higher expected return (+0.6 against -0.6).
    outputs = mx.nd.array([np.concatenate([logits(0.7, 0.2, 0.1), logits(0.1, 0.2, 0.7)])])
    m = block(outputs, scalars([0], [0.0], [1.0])).asnumpy()
    np.testing.assert_allclose(m[0], [0.1, 0.2, 0.7], atol=1e-6)


def test_qr_target_and_quantile_huber_loss():
    model = ReturnModel("qr-dqn", 2)
    target = DistributionalTDTarget(None, Passthrough(), model, n_actions=2, double_q=False)
    # Action 1 has the higher mean (3 against 1): its quantiles, shifted by r + discount * theta.
    next_outputs = mx.nd.array([[0.0, 2.0, 1.0, 5.0]])
    targets = target(next_outputs, scalars([0], [1.0], [0.5])).asnumpy()
    np.testing.assert_allclose(targets, [[1.5, 3.5]])
    loss_block = DistributionalLoss(Passthrough(), model, n_actions=2, huber_delta=1.0)
    obs = mx.nd.array([[1.0, 2.0, 9.0, 9.0]])  # action 0's quantiles: 1, 2
    weighted, q_taken, loss = loss_block(obs, scalars([0], [0.0], [0.0], [0.5]), mx.nd.array(targets))
    # u_ij = T_j - theta_i: (0.5, 2.5) for theta_0 = 1 at tau 1/4; (-0.5, 1.5) for theta_1 = 2 at tau 3/4.
    huber = lambda u: 0.5 * u * u if abs(u) <= 1 else abs(u) - 0.5  # noqa: E731
    expected = (np.mean([0.25 * huber(0.5), 0.25 * huber(2.5)]) +
                np.mean([0.25 * huber(-0.5), 0.75 * huber(1.5)]))
    np.testing.assert_allclose(loss.asnumpy(), [expected], rtol=1e-6)
    np.testing.assert_allclose(weighted.asnumpy(), [0.5 * expected], rtol=1e-6)
    np.testing.assert_allclose(q_taken.asnumpy(), [1.5])


def test_c51_loss_is_the_cross_entropy_and_q_the_expectation():
    loss_block = DistributionalLoss(Passthrough(), C51, n_actions=1)
    p = np.array([0.2, 0.5, 0.3])
    m = np.array([[0.1, 0.35, 0.55]])
    _, q_taken, loss = loss_block(mx.nd.array([np.log(p)]), scalars([0], [0.0], [0.0]), mx.nd.array(m))
    np.testing.assert_allclose(loss.asnumpy(), [-(m[0] * np.log(p)).sum()], rtol=1e-5)
    np.testing.assert_allclose(q_taken.asnumpy(), [0.1], atol=1e-6)  # -0.2 + 0 + 0.3


@pytest.mark.parametrize("model", [C51, ReturnModel("qr-dqn", 4)], ids=["c51", "qr-dqn"])
def test_expected_q_in_numpy_equals_the_graphs(model):
    outputs = np.random.default_rng(0).normal(size=(5, 3 * model.per_action)).astype(np.float32)
    in_numpy = model.expected_q(outputs, 3)
    in_mxnet = model.expected_q_graph(mx.nd, mx.nd.array(outputs).reshape((0, 3, model.per_action))).asnumpy()
    np.testing.assert_allclose(in_numpy, in_mxnet, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dueling", [False, True])
def test_the_numpy_copy_of_a_distributional_mlp_gives_its_outputs(dueling):
    spec = EnvSpec("v", (4,), np.dtype(np.float32), (4,), 1, 3, False)
    net = networks.build(NetworkConfig(name="mlp", dueling=dueling, hidden=(8,)), spec, prefix="z_", per_action=5)
    net.initialize(mx.init.Xavier())
    obs = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    outputs = net(mx.nd.array(obs)).asnumpy()
    assert outputs.shape == (6, 15)
    copy = networks.NumpyMLP(net)
    copy.load(np.concatenate([p.data().asnumpy().ravel() for p in copy.parameters()]))
    np.testing.assert_allclose(copy(obs), outputs, rtol=1e-5, atol=1e-5)


def test_algorithms_are_refused_where_they_do_not_apply():
    with pytest.raises(UserError, match="agent.algo must be one of dqn, c51, qr-dqn"):
        Config().replace({"agent.algo": "iqn"})
    with pytest.raises(UserError, match="mode async learns with"):
        Config().replace({"agent.algo": "c51", "run.mode": "async"})
    with pytest.raises(UserError, match="the ensemble mixes"):
        Config().replace({"agent.algo": "qr-dqn", "run.mode": "ensemble", "run.ctx": "cpu:0,cpu:1"})
    with pytest.raises(UserError, match="v_min below"):
        Config().replace({"agent.algo": "c51", "agent.v_min": 5.0, "agent.v_max": 5.0})
    assert AgentConfig().algo == "dqn"


def test_a_noisy_layer_changes_its_noise_only_when_asked_and_without_it_is_a_dense_layer():
    from gluon_pdqn.networks.noisy import NoisyDense

    layer = NoisyDense(3, in_units=4, activation="relu")
    layer.initialize()
    x = mx.nd.array(np.random.default_rng(2).normal(size=(5, 4)))
    plain = mx.nd.relu(mx.nd.FullyConnected(x, layer.weight.data(), layer.bias.data(), num_hidden=3)).asnumpy()
    rng = np.random.default_rng(0)
    for hybridize in (False, True):
        if hybridize:
            layer.hybridize()
        layer.silence()
        np.testing.assert_allclose(layer(x).asnumpy(), plain, rtol=1e-6)  # silent: the means alone
        layer.resample(rng)
        first = layer(x).asnumpy()
        np.testing.assert_array_equal(layer(x).asnumpy(), first)  # the same noise until asked
        assert not np.allclose(first, plain)
        layer.resample(rng)
        assert not np.allclose(layer(x).asnumpy(), first)


@pytest.mark.parametrize("dueling, per_action", [(False, 1), (True, 5)])
def test_the_numpy_copy_of_a_noisy_mlp_draws_the_networks_noise(dueling, per_action):
    spec = EnvSpec("v", (4,), np.dtype(np.float32), (4,), 1, 3, False)
    net = networks.build(NetworkConfig(name="mlp", dueling=dueling, hidden=(8,), noisy=True), spec, prefix="q_",
                         per_action=per_action)
    net.initialize(mx.init.Xavier())
    obs = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    copy = networks.NumpyMLP(net)
    copy.load(np.concatenate([p.data().asnumpy().ravel() for p in copy.parameters()]))
    np.testing.assert_allclose(copy(obs), net(mx.nd.array(obs)).asnumpy(), rtol=1e-5, atol=1e-5)  # both silent
    # From the same Generator state both draw the same noise, layer by layer.
    networks.resample_noise(net, np.random.default_rng(5))
    copy.resample(np.random.default_rng(5))
    noisy = copy(obs)
    np.testing.assert_allclose(noisy, net(mx.nd.array(obs)).asnumpy(), rtol=1e-5, atol=1e-5)
    copy.silence()
    assert not np.allclose(copy(obs), noisy)


def test_a_noisy_learner_acts_with_fresh_noise_and_evaluates_with_its_means():
    from gluon_pdqn.learners import SingleLearner

    spec = EnvSpec("v", (4,), np.dtype(np.float32), (4,), 1, 3, False)
    learner = SingleLearner(Config().replace({"network.noisy": True, "network.hidden": "16"}), spec, mx.cpu())
    obs = np.random.default_rng(3).normal(size=(4, 4)).astype(np.float32)
    assert not np.allclose(learner.q_values(obs), learner.q_values(obs))
    with learner.without_noise():
        deterministic = learner.q_values(obs)
        np.testing.assert_array_equal(learner.q_values(obs), deterministic)
    networks.silence_noise(learner.online)
    np.testing.assert_allclose(learner.online(mx.nd.array(obs)).asnumpy(), deterministic, rtol=1e-5, atol=1e-6)
