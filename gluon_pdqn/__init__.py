"""gluon_pdqn: train Deep Q-Networks in parallel on Apache MXNet/Gluon."""

__version__ = "0.1.0"
