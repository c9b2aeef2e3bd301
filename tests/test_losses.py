import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from gluon_pdqn.losses import DQNLoss, TDTarget, huber, td_targets
from gluon_pdqn.replay import ReplayBuffer

nd = mx.nd


def test_double_dqn_target_uses_the_online_argmax_and_target_values():
    rewards, discounts = nd.array([1.0, 1.0]), nd.array([0.9, 0.0])
    next_q_target = nd.array([[10.0, 20.0], [10.0, 20.0]])
    next_q_online = nd.array([[5.0, 1.0], [5.0, 1.0]])  # online prefers action 0
    double = td_targets(nd, rewards, discounts, next_q_target, next_q_online).asnumpy()
    plain = td_targets(nd, rewards, discounts, next_q_target).asnumpy()
    np.testing.assert_allclose(double, [1.0 + 0.9 * 10.0, 1.0])
    np.testing.assert_allclose(plain, [1.0 + 0.9 * 20.0, 1.0])


def test_huber_is_quadratic_inside_delta_and_linear_outside():
    x = nd.array([-3.0, -0.5, 0.0, 0.5, 3.0])
    np.testing.assert_allclose(huber(nd, x, 1.0).asnumpy(), [2.5, 0.125, 0.0, 0.125, 2.5], rtol=1e-6)
    np.testing.assert_allclose(huber(nd, x, 2.0).asnumpy(), [4.0, 0.125, 0.0, 0.125, 4.0], rtol=1e-6)


class Fixed(gluon.HybridBlock):
    """A 'network' returning given Q-values per observation id (obs[:, 0] indexes a table)."""

    def __init__(self, table, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.table = self.params.get_constant("table", nd.array(table))

    def hybrid_forward(self, F, obs, table):
        return F.take(table, F.slice_axis(obs, axis=1, begin=0, end=1).reshape((-1,)))


@pytest.mark.parametrize("terminated", [True, False])
def test_truncated_bootstraps_and_terminated_does_not_from_replay_to_loss(terminated):
    """Hand numbers: an episode of 2 steps, rewards 1 and 2, gamma 0.5, n = 2; Q-tables chosen by hand."""
    gamma = 0.5
    buffer = ReplayBuffer(20, 1, (1,), np.float32, n_step=2, gamma=gamma, seed=0)
    buffer.begin_episode(0, np.array([0.0], np.float32))
    buffer.add(0, 1, 1.0, np.array([1.0], np.float32), False, False)
    buffer.add(0, 0, 2.0, np.array([2.0], np.float32), terminated, not terminated)
    buffer.begin_episode(0, np.array([3.0], np.float32))
    for _ in range(3):
        buffer.add(0, 0, 0.0, np.array([3.0], np.float32), False, False)
    batch = buffer.sample(200)
    first = batch.obs[:, 0] == 0.0
    online = Fixed([[0.0, 7.0], [0.0, 0.0], [4.0, 1.0], [0.0, 0.0]], prefix="online_")
    target = Fixed([[0.0, 0.0], [0.0, 0.0], [10.0, 30.0], [0.0, 0.0]], prefix="target_")
    td_target, loss = TDTarget(online, target, double_q=True), DQNLoss(online, loss="mse")
    for block in (online, target):
        block.initialize()
    scalars = nd.array(np.stack([batch.actions, batch.rewards, batch.discounts, batch.weights], 1).astype(np.float32))
    per, q_taken, td_abs = loss(nd.array(batch.obs), scalars, td_target(nd.array(batch.next_obs), scalars))
    # From obs 0, action 1: Q = 7. Return 1 + 0.5 * 2 = 2. The final obs 2: online argmax is action 0,
    # whose target value is 10, so the truncated target is 2 + 0.25 * 10 = 4.5; terminated: 2.
    expected_target = 2.0 if terminated else 4.5
    np.testing.assert_allclose(q_taken.asnumpy()[first], 7.0)
    np.testing.assert_allclose(td_abs.asnumpy()[first], 7.0 - expected_target, rtol=1e-6)
    np.testing.assert_allclose(per.asnumpy()[first], (7.0 - expected_target) ** 2, rtol=1e-6)


@pytest.mark.parametrize("double_q", [True, False])
def test_gradient_without_a_backward_over_next_obs_equals_the_reference(double_q):
    """The learner's TD target runs unrecorded; its gradient equals a reference that records s and s' together.

    The reference is the textbook graph: one pass of the online network over s and s' concatenated, the s'
    half cut off with BlockGrad, all recorded (what the learner did before it split the two).
    """
    from mxnet import autograd

    from gluon_pdqn.config import Config
    from gluon_pdqn.envs import EnvSpec
    from gluon_pdqn.learners import SingleLearner
    from tests_helpers import a_batch

    spec = EnvSpec("i", (4, 84, 84), np.dtype(np.uint8), (84, 84), 4, 4, True)
    cfg = Config().replace({"network.name": "nature_cnn", "agent.double_q": double_q})
    learner = SingleLearner(cfg, spec, mx.cpu(0))
    batch = a_batch(spec, size=8, seed=3)
    learner.sync_target()
    for p in learner.target.collect_params().values():  # a target unlike the online network
        p.set_data(p.data() * 0.9)
    learner.forward_backward(batch)
    ours = [p.grad().asnumpy().copy() for p in learner.nets.params]

    online, target = learner.online, learner.target
    obs, next_obs = nd.array(batch.obs, dtype="uint8"), nd.array(batch.next_obs, dtype="uint8")
    with autograd.record():
        q, next_q_online = nd.split(online(nd.concat(obs, next_obs, dim=0)), num_outputs=2, axis=0)
        next_q_target = nd.BlockGrad(target(next_obs))
        targets = td_targets(nd, nd.array(batch.rewards), nd.array(batch.discounts), next_q_target,
                             nd.BlockGrad(next_q_online) if double_q else None)
        td = nd.pick(q, nd.array(batch.actions), axis=1) - targets
        loss = (huber(nd, td) * nd.array(batch.weights) / len(batch.actions)).sum()
    loss.backward()
    for param, grad in zip(learner.nets.params, ours):
        np.testing.assert_allclose(grad, param.grad().asnumpy(), rtol=1e-4, atol=1e-6, err_msg=param.name)
    assert any(np.abs(g).max() > 0 for g in ours)
