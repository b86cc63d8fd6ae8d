"""Error types that the command line turns into one-line messages without a traceback."""


class FlaxnetsError(Exception):
    """A problem with the user's input or environment; the message is one line naming the
    bad value and what was expected. The CLI prints it and exits with status 1."""

    exit_code = 1


class UsageError(FlaxnetsError):
    """A bad command-line usage (unknown option value, unknown recipe key, ...): exit status 2."""

    exit_code = 2
