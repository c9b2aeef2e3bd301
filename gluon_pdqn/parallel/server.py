"""A kvstore server or scheduler of a parameter-server job (``DMLC_ROLE`` says which).

MXNet runs either at import: ``import mxnet`` with ``DMLC_ROLE`` set to ``server`` or ``scheduler`` serves the
job and returns when it ends. This module imports gluon_pdqn first, so that subnormal floats are flushed
(``gluon_pdqn.flush_denormals``) before MXNet starts the engine threads the server's optimizer updates run in:
its optimizer state decays where gradients stay zero, as a single learner's does.
"""
import gluon_pdqn  # noqa: F401  (flushes subnormal floats, in the threads started from here on)
import mxnet  # noqa: F401  (serves the job, for DMLC_ROLE=server or scheduler)
