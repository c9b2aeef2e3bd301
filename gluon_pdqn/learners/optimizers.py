"""Optimizers for the learners: MXNet's own, Adam applied by one multi-tensor kernel, and RMSProp with epsilon
added to the root (PyTorch's)."""
from __future__ import annotations

import math

import mxnet as mx

from ..config import OptimConfig
from ..errors import UserError


@mx.optimizer.register
class MultiTensorAdam(mx.optimizer.Adam):
    """Adam whose update of all small parameters is one call of MXNet's ``multi_adamw_update`` kernel.

    Why: MXNet's Adam launches one ``adam_update`` per parameter, and on a CPU each launch costs tens of
    microseconds of overhead, a large share of a small network's update (measured: 6 launches were 18% of
    a CartPole run). With weight decay 0 and the bias correction folded into each learning rate, as
    ``mx.optimizer.Adam`` itself does, ``adamw_update`` computes the same step.

    The kernel reads its gradient scale from an NDArray and skips the step when that is NaN, infinite or 0.
    A learner sets ``gradient_scale`` (see ``learners.base.clip_scale``) so that clipping and the
    non-finite check happen on the device: the Python thread need not wait for any update.
    """

    # Parameters of at least this many elements get a kernel call of their own (``adamw_update``, which reads the
    # same device-side scale): the multi-tensor kernel runs on one thread, and on the Nature CNN's 1.6M-weight
    # dense layer it took 7-10 ms against 4.4 ms for all ten parameters one by one (2 cores).
    LARGE = 1 << 16

    def __init__(self, **kwargs):
        super().__init__(lazy_update=False, **kwargs)
        self.aggregate_num = 32  # parameters per kernel call (the Updater passes lists of this many)
        self._rescale_arrays: dict = {}
        self.gradient_scale: mx.nd.NDArray | None = None  # this step's scale on some device, if set

    def _rescale_array(self, context) -> mx.nd.NDArray:
        """``rescale_grad`` (times ``gradient_scale``) as the NDArray the kernel takes, on ``context``."""
        if self.gradient_scale is not None:
            scale = self.gradient_scale.as_in_context(context)
            return scale if self.rescale_grad == 1.0 else scale * self.rescale_grad
        key = (self.rescale_grad, context)
        if key not in self._rescale_arrays:
            if any(value != self.rescale_grad for value, _ in self._rescale_arrays):
                self._rescale_arrays.clear()
            self._rescale_arrays[key] = mx.nd.full((1,), self.rescale_grad, ctx=context)
        return self._rescale_arrays[key]

    def update(self, index, weight, grad, state):
        if not isinstance(index, (list, tuple)):
            index, weight, grad, state = [index], [weight], [grad], [state]
        self._update_count(index)
        learning_rates = []
        for i in index:
            t = self._index_update_count[i]
            learning_rates.append(self._get_lr(i) * math.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t))
        if any(self._get_wd(i) for i in index):
            raise ValueError("MultiTensorAdam does not apply weight decay")
        kwargs = {"beta1": self.beta1, "beta2": self.beta2, "epsilon": self.epsilon}
        if self.clip_gradient:
            kwargs["clip_gradient"] = self.clip_gradient
        rescale = self._rescale_array(weight[0].context)
        small = [k for k, w in enumerate(weight) if w.size < self.LARGE]
        for k in (k for k, w in enumerate(weight) if w.size >= self.LARGE):
            mx.nd.contrib.adamw_update(weight[k], grad[k], state[k][0], state[k][1], rescale_grad=rescale,
                                       lr=learning_rates[k], eta=1.0, wd=0.0, out=weight[k], **kwargs)
        if small:
            mx.nd.contrib.multi_adamw_update([weight[k] for k in small], [grad[k] for k in small],
                                             [state[k][0] for k in small], [state[k][1] for k in small],
                                             rescale_grad=rescale, lrs=[learning_rates[k] for k in small],
                                             wds=[0.0] * len(small), etas=[1.0] * len(small),
                                             out=[weight[k] for k in small], **kwargs)

    def update_multi_precision(self, index, weight, grad, state):
        self.update(index, weight, grad, state)


@mx.optimizer.register
class RMSPropEpsilonOutsideRoot(mx.optimizer.Optimizer):
    """RMSProp with epsilon added to the root, ``g / (sqrt(v) + eps)``, as PyTorch and TensorFlow define it.

    MXNet's RMSProp, like DeepMind's DQN (``min squared gradient``), adds epsilon under the root,
    ``g / sqrt(v + eps)``. With DQN's epsilon of 0.01 the two differ by up to 10x in step size wherever the
    squared gradient is small, which in DQN it is: for a gradient of 1e-3 the first step is 2.4e-5 here
    against MXNet's 2.5e-6. Code written for PyTorch (the MinAtar authors' reference DQN is) meant this one.
    ``v`` is the decayed mean of squared gradients, less the square of the decayed mean gradient when
    ``centered``; no bias correction, no momentum, as PyTorch's default.

    MXNet has no kernel for it; Adam's, which puts epsilon outside the root and applies no bias correction
    itself, makes it, once per parameter: MXNet's CPU kernels take a square root one element at a time (5 ns an
    element here, against numpy's 0.3), so a pass with a root costs as much as the rest of a small network's
    update, and each step makes exactly one. Uncentred, the step is Adam with ``beta1 = 0`` and
    ``beta2 = gamma1``. Centred, see ``_centred``: two SGD kernels and one Adam kernel, on all small parameters
    at once (multi-tensor calls: on a CPU a call costs tens of microseconds whatever its size).
    """

    # Parameters of at least this many elements get kernels of their own (MXNet's multi-tensor kernels run on one
    # thread, and their loop over parameters is slower per element than the single-parameter kernels).
    LARGE = 1 << 16
    # The meaning of the centred state's arrays (saved in checkpoints): 1, the mean itself (the first version);
    # 2, the mean divided by ``beta1`` of ``_centred``. ``upgrade_state`` reads a checkpoint of layout 1.
    STATE_LAYOUT = 2

    def __init__(self, gamma1: float = 0.95, epsilon: float = 0.01, centered: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.gamma1, self.epsilon, self.centered = gamma1, epsilon, centered
        self.aggregate_num = 32  # parameters per call (the Updater passes lists of this many)
        self._scale_arrays = {}  # the multi-tensor Adam kernel takes its gradient scale as an NDArray

    @property
    def beta1(self) -> float:
        """Adam's ``beta1`` in the centred step: ``1 - 1 / sqrt(gamma1)``, about -0.026 at 0.95."""
        return 1.0 - 1.0 / math.sqrt(self.gamma1)

    def create_state(self, index, weight):
        def zeros():
            return mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype)

        # Centred: the variance, the mean gradient over ``beta1``, its next value, and the deviation (see
        # ``_centred``; a list, as the step swaps the second and third). Uncentred: the mean square, and the
        # first moment Adam's kernel overwrites.
        return [zeros(), zeros(), zeros(), zeros()] if self.centered else [zeros(), zeros()]

    def upgrade_state(self, state, layout: int) -> None:
        """Turn a state saved with ``STATE_LAYOUT`` ``layout`` into this version's, in place."""
        if self.centered and layout == 1:  # (variance, mean, scratch, scratch)
            state[1] *= 1.0 / self.beta1

    def update(self, index, weight, grad, state):
        if not isinstance(index, (list, tuple)):
            index, weight, grad, state = [index], [weight], [grad], [state]
        self._update_count(index)
        if any(self._get_wd(i) for i in index):
            raise ValueError("RMSPropEpsilonOutsideRoot does not apply weight decay")
        lrs = [self._get_lr(i) for i in index]
        small = [k for k, w in enumerate(weight) if w.size < self.LARGE]
        for group in [small] + [[k] for k, w in enumerate(weight) if w.size >= self.LARGE]:
            if not group:
                continue
            pick = lambda arrays: [arrays[k] for k in group]  # noqa: E731
            if self.centered:
                self._centred(pick(weight), pick(grad), pick(state), pick(lrs))
            else:
                states = pick(state)
                self._adam(pick(weight), pick(grad), [s[1] for s in states], [s[0] for s in states], pick(lrs),
                           self.rescale_grad, beta1=0.0, beta2=self.gamma1)

    def _centred(self, weights, grads, states, lrs) -> None:
        """One centred step of these parameters, one pass with a root over each element.

        With ``u`` the gradient (times ``rescale_grad``, clipped), ``m`` the mean gradient before the step,
        ``k = sqrt(gamma)`` and ``b = 1 - 1 / k`` (Adam's ``beta1`` here, negative), the state holds ``v``,
        ``P = m / b``, ``Q`` and ``X``:
        1. SGD kernel: ``X := k (u - m) = (1 - k) P + k u`` (learning rate ``-k``, weight decay -1);
        2. SGD kernel: ``Q := m' / b = gamma P + (1 - gamma) / b u``, the next step's ``P``;
        3. Adam kernel with ``beta1 = b``, ``beta2 = gamma`` on gradient ``X``: its first moment
           ``b P + (1 - b) X = m + (u - m) = u`` and second ``gamma v + (1 - gamma) gamma (u - m)^2``, which is
           the centred variance's recurrence (the mean square less the squared mean, which can go negative by
           rounding where their difference cannot); the step ``lr u / (sqrt(v') + eps)``.
        Then ``P`` and ``Q`` swap places (``P`` holds ``u`` now, and is the next step's scratch).
        """
        gamma, k, b = self.gamma1, math.sqrt(self.gamma1), self.beta1
        variances, means, nexts, deviations = ([s[j] for s in states] for j in range(4))
        self._sgd(means, grads, deviations, lr=-k, wd=-1.0)
        self._sgd(means, grads, nexts, lr=-(1.0 - gamma) / b, wd=-b)
        self._adam(weights, deviations, means, variances, lrs, 1.0, beta1=b, beta2=gamma, clip=False)
        for state in states:
            state[1], state[2] = state[2], state[1]

    def _sgd(self, weights, grads, outs, lr: float, wd: float) -> None:
        """``outs := (1 - lr wd) weights - lr u``: MXNet's SGD kernel, with ``u`` the scaled, clipped gradient."""
        kwargs = {"rescale_grad": self.rescale_grad}
        if self.clip_gradient:
            kwargs["clip_gradient"] = self.clip_gradient
        if len(weights) == 1:
            mx.nd.sgd_update(weights[0], grads[0], lr=lr, wd=wd, out=outs[0], **kwargs)
        else:
            mx.nd.multi_sgd_update(*[a for pair in zip(weights, grads) for a in pair], lrs=[lr] * len(weights),
                                   wds=[wd] * len(weights), num_weights=len(weights), out=outs, **kwargs)

    def _adam(self, weights, grads, means, variances, lrs, scale: float, clip: bool = True, **kwargs) -> None:
        """Adam's update of ``weights`` (no bias correction, epsilon outside the root), gradients times ``scale``."""
        kwargs["epsilon"] = self.epsilon
        if clip and self.clip_gradient:
            kwargs["clip_gradient"] = self.clip_gradient
        if len(weights) == 1:
            mx.nd.adam_update(weights[0], grads[0], means[0], variances[0], lr=lrs[0], wd=0.0, rescale_grad=scale,
                              out=weights[0], **kwargs)
            return
        context = weights[0].context
        if (scale, context) not in self._scale_arrays:
            self._scale_arrays[(scale, context)] = mx.nd.full((1,), scale, ctx=context)
        mx.nd.contrib.multi_adamw_update(weights, grads, means, variances,
                                         rescale_grad=self._scale_arrays[(scale, context)], lrs=lrs,
                                         wds=[0.0] * len(weights), etas=[1.0] * len(weights), out=weights, **kwargs)


def make_optimizer(cfg: OptimConfig, on_kvstore_servers: bool = False) -> mx.optimizer.Optimizer:
    """The MXNet optimizer ``cfg`` names (gradients arrive already averaged over the batch).

    ``on_kvstore_servers``: the optimizer is pickled to parameter servers, which unpickle it while ``mxnet``
    itself is still being imported and so can load only MXNet's own classes: Adam is ``mx.optimizer.Adam``.
    """
    if cfg.name == "adam":
        if on_kvstore_servers:
            return mx.optimizer.Adam(learning_rate=cfg.learning_rate, epsilon=cfg.adam_epsilon)
        return MultiTensorAdam(learning_rate=cfg.learning_rate, epsilon=cfg.adam_epsilon)
    if cfg.name == "rmsprop" and cfg.rmsprop_epsilon_outside_root:
        if on_kvstore_servers:
            raise UserError("optim.rmsprop_epsilon_outside_root=true (the minatar preset's) runs in the learner's "
                            "process, and the parameter servers of mode dist have only MXNet's RMSProp: use "
                            "--learner horovod, or --set optim.rmsprop_epsilon_outside_root=false")
        return RMSPropEpsilonOutsideRoot(learning_rate=cfg.learning_rate, gamma1=cfg.rmsprop_decay,
                                         epsilon=cfg.rmsprop_epsilon, centered=cfg.rmsprop_centered)
    if cfg.name == "rmsprop":
        # gamma2 is MXNet's momentum of the centred variant; DQN's RMSProp has none.
        return mx.optimizer.RMSProp(learning_rate=cfg.learning_rate, gamma1=cfg.rmsprop_decay, gamma2=0.0,
                                    epsilon=cfg.rmsprop_epsilon, centered=cfg.rmsprop_centered)
    if cfg.name == "sgd":
        return mx.optimizer.SGD(learning_rate=cfg.learning_rate, momentum=cfg.momentum)
    raise ValueError(f"unknown optimizer {cfg.name!r}")
