"""Creating MXNet kvstores: the only module that calls ``mx.kv``."""
from __future__ import annotations

import os

import mxnet as mx

from ..errors import UserError

DIST_KVSTORES = ("dist_sync", "dist_async")


def create_dist_kvstore(kind: str) -> mx.kvstore.KVStore:
    """Join the parameter-server job this process was started in (``gluon-pdqn launch`` sets ``DMLC_*``)."""
    if kind not in DIST_KVSTORES:
        raise UserError(f"mode dist needs --kvstore dist_sync or dist_async, not {kind!r}")
    if os.environ.get("DMLC_ROLE") != "worker":
        raise UserError("mode dist runs inside a job: start it with gluon-pdqn launch --workers N --servers M -- "
                        "train --mode dist ...")
    if not mx.runtime.Features().is_enabled("DIST_KVSTORE"):
        raise UserError("this mxnet build has no distributed kvstore (DIST_KVSTORE)")
    return mx.kv.create(kind)
