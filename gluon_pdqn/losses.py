"""TD targets and losses, as one hybridizable graph per update.

A transition's target is ``reward + discount * Q_target(next_obs, a*)``, where the replay has already put
``discount = gamma**k`` for a k-step transition that may be bootstrapped (time-limit truncation included) and
``discount = 0`` where the episode terminated. ``a*`` is the online network's argmax (double DQN) or the target
network's own.
"""
from __future__ import annotations

import math

from mxnet import gluon


def td_targets(F, rewards, discounts, next_q_target, next_q_online=None):
    """``rewards + discounts * bootstrap``; double DQN when ``next_q_online`` is given. No gradient flows."""
    if next_q_online is not None:
        bootstrap = F.pick(next_q_target, F.argmax(next_q_online, axis=1), axis=1)
    else:
        bootstrap = F.max(next_q_target, axis=1)
    return F.BlockGrad(rewards + discounts * bootstrap)


def huber(F, x, delta: float = 1.0):
    """0.5 x^2 where |x| <= delta, else delta (|x| - delta / 2)."""
    return delta * F.smooth_l1(x, scalar=1.0 / math.sqrt(delta))


def squared(F, x):
    """x^2 (the loss of the MSE form of DQN)."""
    return F.square(x)


class DQNLoss(gluon.HybridBlock):
    """Per-transition weighted TD loss of ``online`` against ``target``, in one graph.

    Inputs: ``obs`` and ``next_obs`` (batch, ...), and ``scalars`` (batch, 4) holding action, reward,
    discount and weight per transition (weights already divided by the global batch size, so the sum of
    the output is the batch's mean loss, on one device or summed over several).
    Outputs: weighted loss per transition, Q(s, a) taken, |TD error|.
    """

    def __init__(self, online: gluon.HybridBlock, target: gluon.HybridBlock | None, *, double_q: bool = True,
                 loss: str = "huber", huber_delta: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.online = online
        self.target = target
        self._double_q = double_q
        self._loss_name = loss
        self._huber_delta = huber_delta

    def hybrid_forward(self, F, obs, next_obs, scalars):
        return self._loss(F, obs, next_obs, scalars, F.BlockGrad(self.target(next_obs)))

    def _loss(self, F, obs, next_obs, scalars, next_q_target):
        actions, rewards, discounts, weights = F.split(scalars, num_outputs=4, axis=1, squeeze_axis=True)
        if self._double_q:
            # One pass of the online network over s and s' together: half the calls of two passes.
            q, next_q_online = F.split(self.online(F.concat(obs, next_obs, dim=0)), num_outputs=2, axis=0)
            next_q_online = F.BlockGrad(next_q_online)
        else:
            q, next_q_online = self.online(obs), None
        targets = td_targets(F, rewards, discounts, next_q_target, next_q_online)
        q_taken = F.pick(q, actions, axis=1)
        td = q_taken - targets
        per_transition = huber(F, td, self._huber_delta) if self._loss_name == "huber" else squared(F, td)
        return per_transition * weights, q_taken, F.abs(td)


class GivenTargetDQNLoss(DQNLoss):
    """:class:`DQNLoss` whose target Q-values of ``next_obs`` (batch, actions) come in as a fourth input.

    Used by ensemble members, whose target mixes the other members' target networks.
    """

    def __init__(self, online: gluon.HybridBlock, **kwargs):
        super().__init__(online, None, **kwargs)

    def hybrid_forward(self, F, obs, next_obs, scalars, next_q_target):
        return self._loss(F, obs, next_obs, scalars, F.BlockGrad(next_q_target))


class QRegressionLoss(gluon.HybridBlock):
    """Mean TD loss of ``online`` against targets computed outside (async one-step and n-step Q-learning).

    Inputs: ``obs`` (batch, ...), ``actions`` and ``targets`` (batch,). Outputs: mean loss, Q(s, a), |TD error|.
    """

    def __init__(self, online: gluon.HybridBlock, *, loss: str = "huber", huber_delta: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.online = online
        self._loss_name = loss
        self._huber_delta = huber_delta

    def hybrid_forward(self, F, obs, actions, targets):
        q_taken = F.pick(self.online(obs), actions, axis=1)
        td = q_taken - F.BlockGrad(targets)
        per_transition = huber(F, td, self._huber_delta) if self._loss_name == "huber" else squared(F, td)
        return F.mean(per_transition), q_taken, F.abs(td)


class ActorCriticLoss(gluon.HybridBlock):
    """A3C's loss (Mnih et al. 2016) for a network whose last output column is V(s), the others policy logits.

    ``-log pi(a|s) * (R - V(s)) - entropy_beta * H(pi(.|s)) + value_coef * L(R - V(s))``, averaged over the
    batch, with L the Huber loss or x^2 / 2; the advantage carries no gradient into the value. Inputs: ``obs``,
    ``actions``, ``returns`` (the n-step returns R). Outputs: mean loss, V(s), |R - V(s)|.
    """

    def __init__(self, network: gluon.HybridBlock, n_actions: int, *, entropy_beta: float, value_coef: float,
                 loss: str = "huber", huber_delta: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self._n_actions = n_actions
        self._entropy_beta = entropy_beta
        self._value_coef = value_coef
        self._loss_name = loss
        self._huber_delta = huber_delta

    def hybrid_forward(self, F, obs, actions, returns):
        out = self.network(obs)
        logits = F.slice_axis(out, axis=1, begin=0, end=self._n_actions)
        values = F.reshape(F.slice_axis(out, axis=1, begin=self._n_actions, end=self._n_actions + 1), (-1,))
        log_pi = F.log_softmax(logits, axis=1)
        advantages = F.BlockGrad(returns - values)
        policy_loss = -F.pick(log_pi, actions, axis=1) * advantages
        entropy = -F.sum(F.exp(log_pi) * log_pi, axis=1)
        errors = returns - values
        value_loss = huber(F, errors, self._huber_delta) if self._loss_name == "huber" else 0.5 * F.square(errors)
        loss = F.mean(policy_loss - self._entropy_beta * entropy + self._value_coef * value_loss)
        return loss, values, F.abs(errors)
