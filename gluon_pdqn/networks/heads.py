"""Output heads that turn features into one Q-value per action."""
from __future__ import annotations

from mxnet import gluon


class QHead(gluon.HybridBlock):
    """A linear Q head, or the dueling head of Wang et al. (2016): Q = V + A - mean(A)."""

    def __init__(self, n_actions: int, dueling: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.dueling = dueling
        with self.name_scope():
            self.advantage = gluon.nn.Dense(n_actions, flatten=False)
            if dueling:
                self.value = gluon.nn.Dense(1, flatten=False)

    def hybrid_forward(self, F, features):
        advantage = self.advantage(features)
        if not self.dueling:
            return advantage
        centred = F.broadcast_sub(advantage, F.mean(advantage, axis=1, keepdims=True))
        return F.broadcast_add(self.value(features), centred)
