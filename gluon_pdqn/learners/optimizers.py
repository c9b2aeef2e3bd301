"""Optimizers for the learners: MXNet's own, plus Adam applied by one multi-tensor kernel."""
from __future__ import annotations

import math

import mxnet as mx

from ..config import OptimConfig


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


def make_optimizer(cfg: OptimConfig, on_kvstore_servers: bool = False) -> mx.optimizer.Optimizer:
    """The MXNet optimizer ``cfg`` names (gradients arrive already averaged over the batch).

    ``on_kvstore_servers``: the optimizer is pickled to parameter servers, which unpickle it while ``mxnet``
    itself is still being imported and so can load only MXNet's own classes: Adam is ``mx.optimizer.Adam``.
    """
    if cfg.name == "adam":
        if on_kvstore_servers:
            return mx.optimizer.Adam(learning_rate=cfg.learning_rate, epsilon=cfg.adam_epsilon)
        return MultiTensorAdam(learning_rate=cfg.learning_rate, epsilon=cfg.adam_epsilon)
    if cfg.name == "rmsprop":
        # gamma2 is MXNet's momentum of the centred variant; DQN's RMSProp has none.
        return mx.optimizer.RMSProp(learning_rate=cfg.learning_rate, gamma1=cfg.rmsprop_decay, gamma2=0.0,
                                    epsilon=cfg.rmsprop_epsilon, centered=cfg.rmsprop_centered)
    if cfg.name == "sgd":
        return mx.optimizer.SGD(learning_rate=cfg.learning_rate, momentum=cfg.momentum)
    raise ValueError(f"unknown optimizer {cfg.name!r}")
