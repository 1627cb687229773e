"""The one error type of analysis/: a user-facing, one-line message."""


class AnalysisError(Exception):
    """A problem the user can fix (unknown sweep or run, unreachable store...).

    The message is one line; the CLI prints it as `error: <message>`.
    """
