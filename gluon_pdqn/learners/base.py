"""The learner interface, and the pieces every learner shares.

A training loop uses a replay learner like this::

    values = learner.greedy_values(obs)  # acting and evaluation: numpy in, numpy out (argmax: greedy action)
    result = learner.step(batch)         # one update; result.skipped if the gradient was not finite
    learner.settle(result)               # after the update finished: did it apply? (the learner counts it)
    replay.update_priorities(batch.indices, result.td_errors())
    learner.save(directory); learner.load(directory)

A learner is an algorithm (``algorithms``: the target and the loss) and a placement (``single.OneDevice``,
``data_parallel.DataParallel``, ``model_parallel.ModelParallel``, ``distributed.ParameterServer``: how the
batch's gradient is computed and applied over devices) put together around its networks (``qnets``). Two take
part in something beyond one update, and say so through an optional role instead of hooks every learner
would have to stub: ``Learner.job`` (a worker of a job, parameter-server or Horovod: ``agree_to_stop``,
``stops_together``, ``leave``, ``traffic_figures``, ``exchange_figures``) and ``Learner.ensemble``
(``member_q_functions``, ``set_member_returns``, ``episode_started``). Both are None elsewhere.
"""
from __future__ import annotations

import abc
import contextlib
import json
import math
import os
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet import gluon

from ..checkpoint import reading
from ..networks import structural_params
from ..errors import UserError


@dataclass
class StepResult:
    """What one learner step produced. Device arrays are read only when asked (one wait each).

    With Adam the learner never waits for a step: the gradient norm stays on the device, and the update
    kernel itself skips a step whose norm is not finite. Reading ``skipped`` or ``grad_norm`` waits for it.
    """

    _grad_norm: object  # global gradient norm before clipping: a float, or an NDArray not yet read
    _losses: list  # NDArrays of weighted per-transition losses (summing to the batch's mean loss)
    _q_taken: list  # NDArrays of Q(s, a)
    _td_abs: list  # NDArrays of |TD error|
    counted: bool = False  # counted in ``learner_steps`` before it was known whether it applied

    @property
    def grad_norm(self) -> float:
        if not isinstance(self._grad_norm, float):
            self._grad_norm = float(self._grad_norm.asscalar())
        return self._grad_norm

    @property
    def skipped(self) -> bool:
        """The gradient was NaN or infinite and no update was applied."""
        return not math.isfinite(self.grad_norm)

    def loss(self) -> float:
        return float(sum(l.sum().asscalar() for l in self._losses))

    def mean_q(self) -> float:
        return float(np.concatenate([q.asnumpy() for q in self._q_taken]).mean())

    def td_errors(self) -> np.ndarray:
        return np.concatenate([t.asnumpy() for t in self._td_abs])


def clip_scale(F, grad_norm, max_norm: float):
    """The factor an update multiplies its gradient by, computed on the norm's device (``F``: nd or sym).

    ``min(1, max_norm / grad_norm)`` (1 when ``max_norm`` is 0: no clipping), and NaN when the norm is NaN
    or infinite, which makes ``multi_adamw_update`` skip the step.
    """
    finite_or_nan = grad_norm * 0 + 1  # 1 if the norm is finite, NaN otherwise
    if max_norm <= 0:
        return finite_or_nan
    return F.minimum(max_norm / grad_norm, finite_or_nan)


class GradientNormAndScale(gluon.HybridBlock):
    """(global norm, update scale) of gradients on one device, as one compiled graph.

    Inputs: ``loss_scale`` (1,), the factor the loss was multiplied by before the backward pass (fp16's loss
    scaling; 1 otherwise), then the gradients. The norm is that of the unscaled gradient; the update scale
    is the clip factor divided by ``loss_scale``, NaN when the norm is not finite (see ``clip_scale``).

    Why one graph: as ~9 imperative calls it cost 190-270 us of Python per update here, as one graph 60 us.
    """

    def __init__(self, max_norm: float):
        super().__init__()
        self.max_norm = max_norm

    def hybrid_forward(self, F, loss_scale, *grads):
        # One multi-tensor kernel reads every gradient once (a square then a sum per array read each twice and
        # wrote a temporary: 10.7 ms of a Nature-CNN update here).
        norm = F.sqrt(F.sum(F.BlockGrad(F.multi_sum_sq(*grads, num_arrays=len(grads))))) / loss_scale
        return norm, clip_scale(F, norm, self.max_norm) / loss_scale


class DynamicLossScale:
    """Dynamic loss scaling for fp16 (Micikevicius et al. 2018), as ``amp.init_trainer`` does it.

    The loss is multiplied by ``scale`` before the backward pass, so small fp16 gradients do not flush to
    zero; the update divides it out. A step whose gradient overflowed (not finite) is skipped and halves the
    scale; ``growth_interval`` finite steps in a row double it.
    """

    def __init__(self, initial: float = 2.0 ** 15, growth_interval: int = 2000, minimum: float = 1.0):
        self.scale = float(initial)
        self.growth_interval = growth_interval
        self.minimum = minimum
        self._finite_in_a_row = 0

    def observe(self, finite: bool) -> None:
        """Take in whether the last step's gradient was finite."""
        if not finite:
            self.scale = max(self.scale / 2.0, self.minimum)
            self._finite_in_a_row = 0
            return
        self._finite_in_a_row += 1
        if self._finite_in_a_row >= self.growth_interval:
            self.scale *= 2.0
            self._finite_in_a_row = 0


class Learner(abc.ABC):
    """What every learner does beside updating: act, count its updates, refresh its target, save and load.

    How it updates is the verb of its kind: ``step(batch)`` and ``timed_step(batch)`` for the replay learners
    (``single.ReplayLearner``, ``ensemble.EnsembleLearner``), ``learn(rollouts, env_steps)`` for the rollout
    learners (``async_learners.RolloutLearner``). Learners of Q-values also give ``q_values(obs)``.
    """

    learner_steps: int

    def greedy_values(self, obs: np.ndarray) -> np.ndarray:
        """What acting and evaluation maximize (batch, n_actions): the Q-values (A3C: its policy's logits)."""
        return self.q_values(obs)

    @contextlib.contextmanager
    def without_noise(self):
        """Act deterministically inside: noisy layers (``network.noisy``) act with their means. Evaluation uses it."""
        yield

    @property
    def job(self):
        """This learner's part in a job of several processes (mode dist), or None: see the module's docstring."""
        return None

    @property
    def ensemble(self):
        """This learner as an ensemble of members (mode ensemble), or None: see the module's docstring."""
        return None

    def restore_notes(self) -> list[str]:
        """What a run resumed into this learner should be told about the state it could not restore."""
        return []

    def settle(self, result: StepResult) -> bool:
        """Take in whether ``result``'s update applied (reading it waits for the update); return that.

        The learner owns ``learner_steps``: an update counted before it was known whether its gradient was
        finite (``result.counted``; Adam skips on the device, no step waits) is uncounted here if it was skipped.
        """
        if result.skipped and result.counted:
            self.learner_steps -= 1
        return not result.skipped

    @abc.abstractmethod
    def sync_target(self) -> None:
        """Copy the online parameters into the target network."""

    def refresh_policy(self) -> None:
        """Act with the online parameters as they are now.

        Learners acting from a snapshot (``run.overlap_acting``) keep acting with it until the next call;
        the others always act with their latest parameters, and this does nothing.
        """

    def policy_parameters(self) -> dict[str, np.ndarray]:
        """The online network's parameters by place (``body.0.weight``), read to numpy: what apex actors copy."""
        return {name: param.list_data()[0].asnumpy() for name, param in structural_params(self.online).items()}

    @abc.abstractmethod
    def save(self, directory: str) -> None:
        """Write parameters and optimizer state into ``directory`` (MXNet's array format and JSON; no pickle)."""

    @abc.abstractmethod
    def load(self, directory: str, with_optimizer: bool = True) -> None:
        """Restore what ``save`` wrote (parameters only, for acting, without ``with_optimizer``).

        Raises UserError if the files were made for another network.
        """


def device_figures(contexts: list[mx.Context], ready: list[float], kvstore_s: float, update_s: float,
                   step_s: float) -> list[dict]:
    """Rows of a timed step (see ``Learner.timed_step``): ``ready`` is when each device's gradients were ready."""
    return [{"device": f"{ctx.device_type}:{ctx.device_id}", "forward_backward_ms": 1e3 * done,
             "idle_ms": 1e3 * (max(ready) - done), "kvstore_ms": 1e3 * kvstore_s, "update_ms": 1e3 * update_s,
             "step_ms": 1e3 * step_s} for ctx, done in zip(contexts, ready)]


def copy_params(source: gluon.Block, destination: gluon.Block) -> None:
    """Copy every parameter value of ``source`` into ``destination`` (same architecture), on all contexts."""
    destination_params = structural_params(destination)
    for name, param in structural_params(source).items():
        destination_params[name].set_data(param.list_data()[0])


def _flatten_state(state, prefix: str, out: dict) -> None:
    if state is None:
        return
    if isinstance(state, (tuple, list)):
        for i, part in enumerate(state):
            _flatten_state(part, f"{prefix}.{i}", out)
    else:
        out[prefix] = state


def _fill_state(state, prefix: str, arrays: dict) -> None:
    if state is None:
        return
    if isinstance(state, (tuple, list)):
        for i, part in enumerate(state):
            _fill_state(part, f"{prefix}.{i}", arrays)
    else:
        if prefix not in arrays:
            raise UserError(f"checkpoint lacks optimizer state '{prefix}' (another optimizer?)")
        source = arrays[prefix]
        if source.shape != state.shape:
            raise UserError(f"checkpoint optimizer state '{prefix}' has shape {source.shape}, expected {state.shape}")
        source.copyto(state)


def save_trainer_states(trainer: gluon.Trainer, directory: str, name: str = "optimizer") -> None:
    """Write a Trainer's optimizer states and update counters without pickle.

    ``Trainer.save_states`` pickles the optimizer, and loading a pickle runs whatever code it names; these
    files hold only arrays (``optimizer.params``) and numbers (``optimizer.json``).
    """
    arrays: dict[str, mx.nd.NDArray] = {}
    for device, updater in enumerate(trainer._updaters):
        for index, state in updater.states.items():
            _flatten_state(state, f"{device}/{index}", arrays)
    optimizer = trainer._optimizer
    meta = {
        "optimizer": type(optimizer).__name__,
        "num_update": optimizer.num_update,
        "update_counts": {str(dev): {str(i): n for i, n in counts.items()}
                          for dev, counts in optimizer._all_index_update_counts.items()},
        "indices": {str(device): sorted(updater.states) for device, updater in enumerate(trainer._updaters)},
        "state_layout": getattr(optimizer, "STATE_LAYOUT", 1),
    }
    mx.nd.save(os.path.join(directory, f"{name}.params"), arrays)
    with open(os.path.join(directory, f"{name}.json"), "w") as f:
        json.dump(meta, f)


def load_trainer_states(trainer: gluon.Trainer, directory: str, name: str = "optimizer") -> None:
    """Restore what :func:`save_trainer_states` wrote into a Trainer over the same parameters and devices."""
    try:
        with open(os.path.join(directory, f"{name}.json")) as f:
            meta = json.load(f)
    except OSError:
        raise UserError(f"checkpoint {directory} has no {name}.json (made by another mode?)") from None
    except json.JSONDecodeError:
        raise UserError(f"checkpoint {directory} is corrupt: {name}.json is not JSON") from None
    with reading(directory, f"{name}.json"):
        _restore_trainer_states(trainer, directory, name, meta)


def _restore_trainer_states(trainer: gluon.Trainer, directory: str, name: str, meta: dict) -> None:
    optimizer = trainer._optimizer
    if meta["optimizer"] != type(optimizer).__name__:
        raise UserError(f"checkpoint was trained with {meta['optimizer']}, this run uses "
                        f"{type(optimizer).__name__}")
    try:
        arrays = mx.nd.load(os.path.join(directory, f"{name}.params")) if meta["indices"] else {}
    except mx.base.MXNetError:
        raise UserError(f"checkpoint {directory} is corrupt: {name}.params is not readable") from None
    if len(meta["indices"]) != len(trainer._updaters):
        raise UserError(f"checkpoint optimizer state is for {len(meta['indices'])} device(s), this run has "
                        f"{len(trainer._updaters)}")
    layout = meta.get("state_layout", 1)  # what the states' arrays mean, for optimizers whose meaning changed
    if layout > getattr(optimizer, "STATE_LAYOUT", 1):
        raise UserError(f"checkpoint {directory} was written by a newer gluon_pdqn ({meta['optimizer']} state "
                        f"layout {layout})")
    for device, updater in enumerate(trainer._updaters):
        for index in meta["indices"][str(device)]:
            weight = trainer._params[index].list_data()[device]
            state = optimizer.create_state_multi_precision(index, weight)
            _fill_state(state, f"{device}/{index}", arrays)
            if layout < getattr(optimizer, "STATE_LAYOUT", 1):
                optimizer.upgrade_state(state, layout)
            updater.states[index] = state
            updater.states_synced[index] = True
    optimizer.num_update = meta["num_update"]
    optimizer._all_index_update_counts.clear()
    for dev, counts in meta["update_counts"].items():
        optimizer._all_index_update_counts[int(dev)] = {int(i): n for i, n in counts.items()}
    optimizer._index_update_count = optimizer._all_index_update_counts.setdefault(0, {})


def save_params(blocks: dict[str, gluon.Block], directory: str) -> None:
    """Write the parameters of named blocks into ``params.params`` (MXNet's array format)."""
    arrays = {f"{name}:{key}": param.list_data()[0] for name, block in blocks.items()
              for key, param in structural_params(block).items()}
    mx.nd.save(os.path.join(directory, "params.params"), arrays)


def load_params(blocks: dict[str, gluon.Block], directory: str) -> None:
    """Load what :func:`save_params` wrote, checking names and shapes first so nothing half-loads."""
    try:
        arrays = mx.nd.load(os.path.join(directory, "params.params"))
    except mx.base.MXNetError:
        raise UserError(f"{directory}: params.params is not a readable MXNet parameter file") from None
    if not isinstance(arrays, dict):
        raise UserError(f"{directory}: params.params holds no named parameters")
    expected = {f"{name}:{key}": param for name, block in blocks.items()
                for key, param in structural_params(block).items()}
    if set(arrays) != set(expected):
        missing = sorted(set(expected) - set(arrays))[:3]
        extra = sorted(set(arrays) - set(expected))[:3]
        raise UserError(f"checkpoint was made for another network (missing {missing}, unexpected {extra})")
    for key, param in expected.items():
        if arrays[key].shape != param.shape:
            raise UserError(f"checkpoint parameter {key} has shape {arrays[key].shape}, this network needs "
                            f"{param.shape}")
    for key, param in expected.items():
        param.set_data(arrays[key])
