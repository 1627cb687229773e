"""The error types of analysis/: user-facing, one-line messages."""


class AnalysisError(Exception):
    """A problem the user can fix (unknown sweep or run, unreachable store...).

    The message is one line; the CLI prints it as `error: <message>`.
    """


class DeclarationError(ValueError):
    """A bad table declaration (`sweep.table`) or reference file entry.

    One line naming the bad key and what is allowed, e.g.
    `sweep.table.rows.gamma: unknown derivation 'lenn'; allowed: count, method, path`.
    """
