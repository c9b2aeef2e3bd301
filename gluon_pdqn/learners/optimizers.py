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

    MXNet has no kernel for it; Adam's kernels make it (``adam_update`` applies no bias correction itself):
    uncentred, it is Adam with ``beta1 = 0`` and ``beta2 = gamma1``, one kernel. Centred, the variance is kept
    directly by its own recurrence, ``v' = gamma v + gamma (1 - gamma) (g - m)^2`` with ``m`` the mean gradient
    before this step (which equals the mean square less the squared mean, and cannot go negative by rounding as
    their difference can), as Adam's second moment of ``g - m`` scaled by ``sqrt(gamma)``; ``m`` moves by
    ``(1 - gamma) (g - m)`` as an SGD step; the step is Adam with ``beta1 = 0`` and ``beta2 = 1`` on ``v``.
    Parameters under ``LARGE`` elements share multi-tensor calls (8 calls for them all, centred, instead of 4
    each): on a CPU each call costs tens of microseconds whatever its size.
    """

    LARGE = 1 << 16

    def __init__(self, gamma1: float = 0.95, epsilon: float = 0.01, centered: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.gamma1, self.epsilon, self.centered = gamma1, epsilon, centered
        self.aggregate_num = 32  # parameters per call (the Updater passes lists of this many)
        self._constants: dict = {}

    def create_state(self, index, weight):
        def zeros():
            return mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype)

        # the variance (the mean square when not centred), the mean gradient, the gradient less that mean, the
        # first moment Adam's kernel is given (overwritten by every call)
        return (zeros(), zeros(), zeros(), zeros()) if self.centered else (zeros(), zeros())

    def _constant(self, value: float, context) -> mx.nd.NDArray:
        """``value`` as the (1,) NDArray the multi-tensor kernels take for their gradient scale."""
        if (value, context) not in self._constants:
            self._constants[(value, context)] = mx.nd.full((1,), value, ctx=context)
        return self._constants[(value, context)]

    def update(self, index, weight, grad, state):
        if not isinstance(index, (list, tuple)):
            index, weight, grad, state = [index], [weight], [grad], [state]
        self._update_count(index)
        if any(self._get_wd(i) for i in index):
            raise ValueError("RMSPropEpsilonOutsideRoot does not apply weight decay")
        for g in grad:  # the learners pass 1 and no clip: these cost nothing then
            if self.rescale_grad != 1.0:
                g *= self.rescale_grad
            if self.clip_gradient:
                mx.nd.clip(g, -self.clip_gradient, self.clip_gradient, out=g)
        lrs = [self._get_lr(i) for i in index]
        gamma, common = self.gamma1, {"epsilon": self.epsilon}
        large = [k for k, w in enumerate(weight) if w.size >= self.LARGE]
        small = [k for k, w in enumerate(weight) if w.size < self.LARGE]
        if not self.centered:
            for k in large:
                mx.nd.adam_update(weight[k], grad[k], state[k][1], state[k][0], lr=lrs[k], beta1=0.0, beta2=gamma,
                                  wd=0.0, out=weight[k], **common)
            if small:
                self._multi_adam(weight, grad, [s[1] for s in state], [s[0] for s in state], small,
                                 [lrs[k] for k in small], 1.0, beta1=0.0, beta2=gamma, **common)
            return
        for k in range(len(weight)):
            mx.nd.elemwise_sub(grad[k], state[k][1], out=state[k][2])
        for k in large:
            variance, mean, deviation, moment = state[k]
            mx.nd.sgd_update(mean, deviation, lr=-(1.0 - gamma), wd=0.0, out=mean)
            mx.nd.adam_update(weight[k], deviation, moment, variance, lr=0.0, beta1=0.0, beta2=gamma, wd=0.0,
                              rescale_grad=math.sqrt(gamma), out=weight[k], **common)
            mx.nd.adam_update(weight[k], grad[k], moment, variance, lr=lrs[k], beta1=0.0, beta2=1.0, wd=0.0,
                              out=weight[k], **common)
        if small:
            data = [a for k in small for a in (state[k][1], state[k][2])]
            mx.nd.multi_sgd_update(*data, lrs=[-(1.0 - gamma)] * len(small), wds=[0.0] * len(small),
                                   num_weights=len(small), out=[state[k][1] for k in small])
            variances, moments = [s[0] for s in state], [s[3] for s in state]
            # multi_adamw_update leaves its gradients scaled in place by its scale: the deviations are not read
            # again, and the gradients' scale is 1.
            self._multi_adam(weight, [s[2] for s in state], moments, variances, small, [0.0] * len(small),
                             math.sqrt(gamma), beta1=0.0, beta2=gamma, **common)
            self._multi_adam(weight, grad, moments, variances, small, [lrs[k] for k in small], 1.0, beta1=0.0,
                             beta2=1.0, **common)

    def _multi_adam(self, weight, grad, moments, variances, chosen, lrs, scale, **kwargs):
        """One ``multi_adamw_update`` over the ``chosen`` parameters, gradients scaled by ``scale``."""
        mx.nd.contrib.multi_adamw_update([weight[k] for k in chosen], [grad[k] for k in chosen],
                                         [moments[k] for k in chosen], [variances[k] for k in chosen],
                                         rescale_grad=self._constant(scale, weight[chosen[0]].context), lrs=lrs,
                                         wds=[0.0] * len(chosen), etas=[1.0] * len(chosen),
                                         out=[weight[k] for k in chosen], **kwargs)


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
