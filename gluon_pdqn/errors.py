"""Exceptions that reach the user as one line: bad input (exit code 2), a stopped run (3), an environment's
fault (4), a run directory that cannot be written (5)."""


class UserError(Exception):
    """Bad input from the user: an unknown environment, option, device or checkpoint.

    The command line prints ``error: <message>`` on one line and exits with code 2; the message must
    say what was wrong and, where possible, what would be right.
    """

    exit_code = 2


class TrainingStopped(Exception):
    """Training cannot go on (repeated non-finite updates); the last good checkpoint is kept."""

    exit_code = 3


class PartLost(Exception):
    """A part of the run outside this process ended unexpectedly (an actor, another process of the job): the
    learner here is sound, so the run checkpoints its work and stops (exit code 3)."""


class JobPeerLost(PartLost):
    """Another process of the job ended: a collective operation with it failed. Its message contains ``WORDS``,
    by which the job's launcher tells the process that failed from those that saw it fail."""

    WORDS = "another process of the job has ended"


class EnvironmentFault(Exception):
    """The environment raised, or returned what no agent can learn from (a NaN reward, a wrong-shaped
    observation). The loop writes a checkpoint of the work done and the traceback to the run directory; the
    command line prints one line and exits with code 4.
    """

    exit_code = 4


class StorageFault(Exception):
    """The run directory cannot be written (the disk is full, a permission was taken away). The newest complete
    checkpoint is intact; the command line prints one line and exits with code 5.
    """

    exit_code = 5
