"""Optimizers for the learners: MXNet's own, plus Adam applied by one multi-tensor kernel."""
from __future__ import annotations

import math

import mxnet as mx

from ..config import OptimConfig
from ..errors import UserError


class DeviceScaled:
    """An optimizer that reads its gradient scale from an NDArray and skips the step when that is NaN,
    infinite or 0 (its kernels are ``adamw_update``'s).

    A learner sets ``gradient_scale`` (see ``learners.base.clip_scale``) so that clipping and the non-finite
    check happen on the device: the Python thread need not wait for any update.
    """

    gradient_scale: mx.nd.NDArray | None = None  # this step's scale on some device, if set

    def _rescale_array(self, context) -> mx.nd.NDArray:
        """``rescale_grad`` (times ``gradient_scale``) as the NDArray the kernel takes, on ``context``."""
        if self.gradient_scale is not None:
            scale = self.gradient_scale.as_in_context(context)
            return scale if self.rescale_grad == 1.0 else scale * self.rescale_grad
        arrays = self.__dict__.setdefault("_rescale_arrays", {})
        key = (self.rescale_grad, context)
        if key not in arrays:
            if any(value != self.rescale_grad for value, _ in arrays):
                arrays.clear()
            arrays[key] = mx.nd.full((1,), self.rescale_grad, ctx=context)
        return arrays[key]


@mx.optimizer.register
class MultiTensorAdam(DeviceScaled, mx.optimizer.Adam):
    """Adam whose update of all small parameters is one call of MXNet's ``multi_adamw_update`` kernel.

    Why: MXNet's Adam launches one ``adam_update`` per parameter, and on a CPU each launch costs tens of
    microseconds of overhead, a large share of a small network's update (measured: 6 launches were 18% of
    a CartPole run). With weight decay 0 and the bias correction folded into each learning rate, as
    ``mx.optimizer.Adam`` itself does, ``adamw_update`` computes the same step.
    """

    # Parameters of at least this many elements get a kernel call of their own (``adamw_update``, which reads the
    # same device-side scale): the multi-tensor kernel runs on one thread, and on the Nature CNN's 1.6M-weight
    # dense layer it took 7-10 ms against 4.4 ms for all ten parameters one by one (2 cores).
    LARGE = 1 << 16

    def __init__(self, **kwargs):
        super().__init__(lazy_update=False, **kwargs)
        self.aggregate_num = 32  # parameters per kernel call (the Updater passes lists of this many)

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
    ``v`` is the decayed mean of squared gradients, minus the square of the decayed mean gradient when
    ``centered``; no bias correction, no momentum, as PyTorch's default.

    MXNet has no kernel for it; two of Adam's make it (``adam_update`` applies no bias correction itself): the
    first keeps both decayed means (Adam's moments, both decays ``gamma1``, learning rate 0), the second takes
    the step as Adam with ``beta1 = 0`` and ``beta2 = 1`` on the (centred) variance.
    """

    def __init__(self, gamma1: float = 0.95, epsilon: float = 0.01, centered: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.gamma1, self.epsilon, self.centered = gamma1, epsilon, centered

    def create_state(self, index, weight):
        def zeros():
            return mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype)

        # mean of squares, mean gradient, the variance the step reads, the step's (overwritten) first moment
        return zeros(), zeros(), zeros(), zeros()

    def update(self, index, weight, grad, state):
        self._update_count(index)
        if self._get_wd(index):
            raise ValueError("RMSPropEpsilonOutsideRoot does not apply weight decay")
        squares, mean, variance, scratch = state
        kwargs = {"rescale_grad": self.rescale_grad, "wd": 0.0, "epsilon": self.epsilon, "out": weight}
        if self.clip_gradient:
            kwargs["clip_gradient"] = self.clip_gradient
        mx.nd.adam_update(weight, grad, mean, squares, lr=0.0, beta1=self.gamma1, beta2=self.gamma1, **kwargs)
        if self.centered:
            mx.nd.relu(squares - mx.nd.square(mean), out=variance)  # >= 0 in exact arithmetic, not in rounding
        else:
            variance = squares
        mx.nd.adam_update(weight, grad, scratch, variance, lr=self._get_lr(index), beta1=0.0, beta2=1.0, **kwargs)


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
            raise UserError("optim.rmsprop_epsilon_outside_root is applied in the learner's process; the "
                            "parameter servers (mode dist with the ps learner) have only MXNet's RMSProp")
        return RMSPropEpsilonOutsideRoot(learning_rate=cfg.learning_rate, gamma1=cfg.rmsprop_decay,
                                         epsilon=cfg.rmsprop_epsilon, centered=cfg.rmsprop_centered)
    if cfg.name == "rmsprop":
        # gamma2 is MXNet's momentum of the centred variant; DQN's RMSProp has none.
        return mx.optimizer.RMSProp(learning_rate=cfg.learning_rate, gamma1=cfg.rmsprop_decay, gamma2=0.0,
                                    epsilon=cfg.rmsprop_epsilon, centered=cfg.rmsprop_centered)
    if cfg.name == "sgd":
        return mx.optimizer.SGD(learning_rate=cfg.learning_rate, momentum=cfg.momentum)
    raise ValueError(f"unknown optimizer {cfg.name!r}")
