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


def _split_scalars(F, scalars):
    """Action, reward, discount and weight per transition, from the (batch, 4) ``scalars`` input."""
    return F.split(scalars, num_outputs=4, axis=1, squeeze_axis=True)


def td_loss(F, td, loss: str, huber_delta: float):
    """Per-transition loss of TD errors ``td``: the Huber loss or x^2 (``loss`` is huber or mse)."""
    return huber(F, td, huber_delta) if loss == "huber" else squared(F, td)


class TDTarget(gluon.HybridBlock):
    """The TD target of each transition, from ``online`` (double DQN's argmax) and ``target`` over ``next_obs``.

    Called outside ``autograd.record``: no gradient flows into s', so no backward pass runs over it (the
    online network's forward over s' costs about a third of an update; its backward would cost more).
    Inputs: ``next_obs`` (batch, ...) and ``scalars`` (batch, 4): action, reward, discount, weight.
    ``target`` None: the target network's Q-values of ``next_obs`` come in as a third input (ensemble
    members mix them from the other members' target networks).
    """

    def __init__(self, online: gluon.HybridBlock, target: gluon.HybridBlock | None, *, double_q: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.online = online if double_q else None  # (a child that computes nothing draws MXNet's warning)
        self.target = target

    def hybrid_forward(self, F, next_obs, scalars, next_q_target=None):
        _, rewards, discounts, _ = _split_scalars(F, scalars)
        if next_q_target is None:
            next_q_target = self.target(next_obs)
        next_q_online = self.online(next_obs) if self.online is not None else None
        return td_targets(F, rewards, discounts, next_q_target, next_q_online)


class DQNLoss(gluon.HybridBlock):
    """Per-transition weighted TD loss of ``online`` against given targets (see :class:`TDTarget`).

    Inputs: ``obs`` (batch, ...), ``scalars`` (batch, 4) holding action, reward, discount and weight per
    transition (weights already divided by the global batch size, so the sum of the output is the batch's
    mean loss, on one device or summed over several), and ``targets`` (batch,).
    Outputs: weighted loss per transition, Q(s, a) taken, |TD error|.
    """

    def __init__(self, online: gluon.HybridBlock, *, loss: str = "huber", huber_delta: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.online = online
        self._loss_name = loss
        self._huber_delta = huber_delta

    def hybrid_forward(self, F, obs, scalars, targets):
        actions, _, _, weights = _split_scalars(F, scalars)
        q_taken = F.pick(self.online(obs), actions, axis=1)
        td = q_taken - F.BlockGrad(targets)
        return td_loss(F, td, self._loss_name, self._huber_delta) * weights, q_taken, F.abs(td)


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
        return F.mean(td_loss(F, td, self._loss_name, self._huber_delta)), q_taken, F.abs(td)


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


# --- distributional targets and losses (distributional.py says how the outputs are read) ---------------


def _per_action(F, outputs, n_actions: int, per_action: int):
    """(batch, n_actions * per_action) outputs as (batch, n_actions, per_action)."""
    return F.reshape(outputs, shape=(0, n_actions, per_action))


def _atom_indices(F, values):
    """0, 1, ..., per_action - 1 on the device of ``values`` (batch, n_actions, per_action) (``F.arange`` would
    put them on the default device: a model-parallel stage runs elsewhere)."""
    return F.contrib.arange_like(values, axis=2)


def _of_actions(F, values, actions, n_actions: int):
    """Rows (batch, per_action) of ``values`` (batch, n_actions, per_action) at ``actions`` (batch,)."""
    return F.sum(F.broadcast_mul(values, F.expand_dims(F.one_hot(actions, n_actions), axis=2)), axis=1)


class DistributionalTDTarget(gluon.HybridBlock):
    """The target distribution of each transition, the distributional form of :class:`TDTarget`.

    The next action a* is the argmax of the expected Q-values: the online network's (double DQN) or the
    target network's own. For ``qr-dqn`` the target is the quantiles ``r + discount * theta_j(s', a*)``
    (batch, N); for ``c51`` the categorical projection of ``r + discount * z_j`` (clipped to [v_min, v_max])
    onto the support, with the target network's probabilities at a* (batch, K): each shifted atom's mass goes
    to its two neighbouring atoms in proportion to closeness, ``sum_i p_i max(0, 1 - |b_i - j|)`` with ``b_i``
    the shifted atom's position in atom units. Written without a scatter: with l_i = floor(b_i), the mass
    p_i (1 - (b_i - l_i)) goes to atom l_i and p_i (b_i - l_i) to atom l_i + 1, two (batch, 1, K) x (batch, K, K)
    products with one-hot matrices (an atom that lands exactly on a support point keeps all its mass there; one
    clipped to v_max sends its zero share to l_i + 1 = K, which one_hot leaves out). Why not the triangle itself:
    it takes six elementwise passes over a (batch, K, K) array, and MXNet's CPU elementwise kernels are slow; on
    MinAtar's network a C51 update takes 0.82x the time this way (benchmarks/c51_projection.py). No gradient
    flows.

    Inputs and calling: as :class:`TDTarget`.
    """

    def __init__(self, online, target, model, n_actions: int, *, double_q: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.online = online if double_q else None
        self.target = target
        self.model, self.n_actions = model, n_actions

    def hybrid_forward(self, F, next_obs, scalars):
        model, n_actions, k = self.model, self.n_actions, self.model.per_action
        _, rewards, discounts, _ = _split_scalars(F, scalars)
        next_outputs = _per_action(F, self.target(next_obs), n_actions, k)
        chooser = _per_action(F, self.online(next_obs), n_actions, k) if self.online is not None else next_outputs
        best = F.argmax(model.expected_q_graph(F, chooser), axis=1)
        rewards, discounts = F.expand_dims(rewards, axis=1), F.expand_dims(discounts, axis=1)
        if model.algo == "qr-dqn":
            quantiles = _of_actions(F, next_outputs, best, n_actions)
            return F.BlockGrad(F.broadcast_add(rewards, F.broadcast_mul(discounts, quantiles)))
        probabilities = _of_actions(F, F.softmax(next_outputs, axis=2), best, n_actions)
        atoms = F.reshape(_atom_indices(F, next_outputs), shape=(1, k))
        shifted = F.clip(F.broadcast_add(rewards, F.broadcast_mul(discounts, atoms * model.delta + model.v_min)),
                         model.v_min, model.v_max)
        position = (shifted - model.v_min) / model.delta  # (batch, K): where each shifted atom lands
        return F.BlockGrad(self.project(F, probabilities, position, k))

    @staticmethod
    def project(F, probabilities, position, k: int):
        """The mass ``probabilities`` (batch, K) of atoms landing at ``position`` (batch, K; in atom units, within
        [0, K - 1]) shared between each one's two neighbouring atoms: the target distribution (batch, K)."""
        lower = F.floor(position)
        upper_share = position - lower
        to_lower = F.batch_dot(F.expand_dims(probabilities * (1 - upper_share), axis=1), F.one_hot(lower, k))
        to_upper = F.batch_dot(F.expand_dims(probabilities * upper_share, axis=1), F.one_hot(lower + 1, k))
        return F.reshape(to_lower + to_upper, shape=(0, k))


class DistributionalLoss(gluon.HybridBlock):
    """Per-transition weighted loss of ``online``'s return distribution against given target distributions.

    ``c51``: the cross-entropy -sum_j m_j log p_j(s, a); ``qr-dqn``: the quantile Huber loss
    sum_i mean_j |tau_i - 1{u_ij < 0}| L_kappa(u_ij) / kappa, u_ij = T theta_j - theta_i(s, a), kappa =
    ``huber_delta``. Inputs as :class:`DQNLoss` (``targets``: (batch, per_action)). Outputs: weighted loss per
    transition, the expected Q(s, a), and the unweighted loss per transition, which prioritized replay takes as
    the priority (as Rainbow does with the cross-entropy).
    """

    def __init__(self, online, model, n_actions: int, *, huber_delta: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.online = online
        self.model, self.n_actions = model, n_actions
        self._kappa = huber_delta

    def hybrid_forward(self, F, obs, scalars, targets):
        model, n_actions, k = self.model, self.n_actions, self.model.per_action
        actions, _, _, weights = _split_scalars(F, scalars)
        outputs = _per_action(F, self.online(obs), n_actions, k)
        taken = _of_actions(F, outputs, actions, n_actions)
        atoms = _atom_indices(F, outputs)
        targets = F.BlockGrad(targets)
        if model.algo == "qr-dqn":
            errors = F.broadcast_sub(F.expand_dims(targets, axis=1), F.expand_dims(taken, axis=2))  # (b, i, j)
            tau = F.reshape((2 * atoms + 1) / (2.0 * k), shape=(1, k, 1))
            asymmetry = F.abs(F.broadcast_sub(tau, errors < 0))
            loss = F.sum(F.mean(asymmetry * huber(F, errors, self._kappa) / self._kappa, axis=2), axis=1)
            q_taken = F.mean(taken, axis=1)
        else:
            loss = -F.sum(targets * F.log_softmax(taken, axis=1), axis=1)
            support = F.reshape(atoms * model.delta + model.v_min, shape=(1, k))
            q_taken = F.sum(F.broadcast_mul(F.softmax(taken, axis=1), support), axis=1)
        return loss * weights, q_taken, loss
