"""A training run: the loop (``loop.Training``) and evaluation episodes (``evaluation``)."""
