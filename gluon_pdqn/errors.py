"""The one exception type that reaches the user as a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input from the user: an unknown environment, option, device or checkpoint.

    The command line prints ``error: <message>`` on one line and exits with code 2; the message must
    say what was wrong and, where possible, what would be right.
    """

    exit_code = 2


class TrainingStopped(Exception):
    """Training cannot go on (repeated non-finite updates); the last good checkpoint is kept."""

    exit_code = 3
