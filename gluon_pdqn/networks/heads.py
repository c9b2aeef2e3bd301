"""Output heads that turn features into the values of each action: one Q-value, or a distribution's outputs."""
from __future__ import annotations

from mxnet import gluon


class QHead(gluon.HybridBlock):
    """A linear head, or the dueling head of Wang et al. (2016): Q = V + A - mean(A).

    ``per_action`` outputs per action (1: the Q-value; a distribution's atoms or quantiles, see
    ``distributional.py``), laid out action-major in (batch, n_actions * per_action). A dueling head then
    has ``per_action`` value outputs and centres the advantages over actions per atom (as Rainbow does).
    """

    def __init__(self, n_actions: int, dueling: bool = False, per_action: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.dueling = dueling
        self.n_actions, self.per_action = n_actions, per_action
        with self.name_scope():
            self.advantage = gluon.nn.Dense(n_actions * per_action, flatten=False)
            if dueling:
                self.value = gluon.nn.Dense(per_action, flatten=False)

    def hybrid_forward(self, F, features):
        advantage = self.advantage(features)
        if not self.dueling:
            return advantage
        if self.per_action == 1:
            centred = F.broadcast_sub(advantage, F.mean(advantage, axis=1, keepdims=True))
            return F.broadcast_add(self.value(features), centred)
        advantage = F.reshape(advantage, shape=(0, self.n_actions, self.per_action))
        centred = F.broadcast_sub(advantage, F.mean(advantage, axis=1, keepdims=True))
        value = F.reshape(self.value(features), shape=(0, 1, self.per_action))
        return F.reshape(F.broadcast_add(value, centred), shape=(0, -1))
