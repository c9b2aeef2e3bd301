"""Acting: who gathers experience for the learner (numpy only, but for the apex actors' CNN copies).

- :mod:`.protocol`: what every collector hands the loop (``Collected``, ``Episode``, ``Rollout``, ``ActorLost``)
  and the ``Collector`` interface.
- :mod:`.checks`: the fault checks every environment call of every collector goes through.
- :mod:`.pool`: the one pool of actor threads or spawned processes (start, receive, death, close).
- :mod:`.vector`: the in-process vector env (modes single, data, model, ensemble; each dist worker).
- :mod:`.apex`: actor processes feeding one shared prioritized replay (mode apex, Horgan et al. 2018).
- :mod:`.async_actors`: actors that ask the learner for every action and hand in rollouts (mode async).
- :mod:`.adder`: the one writer of steps and initial priorities into the replay.

Which collector a run uses is the builder's choice (``gluon_pdqn.build``); nothing here asks for the mode.
"""
from .checks import check_step, environment_call
from .protocol import ActorLost, Collected, Collector, Episode, Rollout

__all__ = ["ActorLost", "Collected", "Collector", "Episode", "Rollout", "check_step", "environment_call"]
