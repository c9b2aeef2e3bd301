"""Creating MXNet kvstores (the only module that calls ``mx.kv``), and the optimizer their servers run.

The servers of a ``dist_*`` job unpickle the optimizer a worker sends them while ``mxnet`` itself is still
being imported, so what they run must be importable then: this module imports nothing of the project but
its error type and the names of the kvstores (``config``, plain Python).
"""
from __future__ import annotations

import os

import mxnet as mx
from mxnet import ndarray  # not mx.nd: the servers' partly imported mxnet has no such attribute yet

from ..config import KVSTORES
from ..errors import UserError

DIST_KVSTORES = tuple(kind for kind in KVSTORES if kind.startswith("dist_"))
# The dist kvstores this process joined, never freed: freeing one runs ps-lite's exit barrier, which blocks
# for good when another process of the job has gone (an interrupted job, a remote worker). A worker leaves
# with os._exit instead (see cli.main).
_JOINED: list = []


def create_dist_kvstore(kind: str) -> mx.kvstore.KVStore:
    """Join the parameter-server job this process was started in (``gluon-pdqn launch`` sets ``DMLC_*``)."""
    if kind not in DIST_KVSTORES:
        raise UserError(f"mode dist needs --kvstore dist_sync or dist_async, not {kind!r}")
    if os.environ.get("DMLC_ROLE") != "worker":
        raise UserError("mode dist runs inside a job: start it with gluon-pdqn launch --workers N --servers M -- "
                        "train --mode dist ...")
    if not mx.runtime.Features().is_enabled("DIST_KVSTORE"):
        raise UserError("this mxnet build has no distributed kvstore (DIST_KVSTORE)")
    kvstore = mx.kv.create(kind)
    _JOINED.append(kvstore)
    return kvstore


class ServerOptimizer(mx.optimizer.Optimizer):
    """What the kvstore servers run: the training optimizer, plus three keys that carry bookkeeping, not weights.

    - ``counter_key`` (one number) counts the updates the servers applied: every push to it adds one, whatever
      it carries (in ``dist_sync`` once per round, for the sum of every worker's push). A worker that pulls it
      with its parameters knows how many updates those parameters contain, hence how stale its gradients are.
    - ``report_key`` (workers x figures) is a board: a worker pushes its figures in its own row with a non-zero
      first column and zeros elsewhere; the servers replace the rows whose first column is non-zero and keep
      the others. ``dist_sync`` sums the workers' pushes first, which fills every row; ``dist_async`` applies
      each worker's row as it arrives. Rank 0 pulls the board, so every worker's figures reach the run
      directory without a shared file system.

    - ``vote_key`` (one number) sums what is pushed to it: the workers' votes to stop (``dist_sync``; see
      ``DistLearner.agree_to_stop``).

    Args:
        inner: the optimizer of the parameters (MXNet's own classes only; see the module docstring).
        counter_key: the kvstore key of the update counter.
        report_key: the kvstore key of the figures board.
        board_width: the length of a row of the board.
        vote_key: the kvstore key of the votes to stop.
    """

    def __init__(self, inner: mx.optimizer.Optimizer, counter_key: int, report_key: int, board_width: int,
                 vote_key: int):
        super().__init__()
        self.inner, self.counter_key, self.report_key = inner, counter_key, report_key
        self.board_width, self.vote_key = board_width, vote_key
        self.aggregate_num = 0  # the servers' updater then calls update_multi_precision one key at a time

    def _set_current_context(self, device_id: int) -> None:
        super()._set_current_context(device_id)
        self.inner._set_current_context(device_id)

    def create_state_multi_precision(self, index, weight):
        if index in (self.counter_key, self.report_key, self.vote_key):
            return None
        return self.inner.create_state_multi_precision(index, weight)

    def update_multi_precision(self, index, weight, grad, state) -> None:
        if index == self.counter_key:
            weight += 1
        elif index == self.vote_key:
            weight += grad
        elif index == self.report_key:
            # The servers hold every array flat: rows are board_width long.
            rows, posted = weight.reshape((-1, self.board_width)), grad.reshape((-1, self.board_width))
            weight[:] = ndarray.where(posted[:, 0] != 0, posted, rows).reshape((-1,))
        else:
            self.inner.update_multi_precision(index, weight, grad, state)
