"""How a sweep that went wrong says so: one line, a non-zero exit, a state
the same command resumes.

Two kinds of trouble, kept apart because the user's next step differs:
- trials failed (their own error: a NaN loss, a bad file): the sweep goes on,
  the summary names each failed cell, and the command exits non-zero;
- a service the driver needs failed mid-sweep (the tracking store past its
  retries, a full disk): the sweep stops, its runs are marked where the
  store still answers, and the same command continues it later.

No heavy imports here: `sweeps.run` needs these names before Ray or MLflow load.
"""

from __future__ import annotations

from typing import Mapping

ERROR_CHARS = 200  # of a cause's message in a one-line report


class SweepAborted(Exception):
    """A service failed mid-sweep; the message is one line and says how to continue."""


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a chain: Tune wraps a callback's error in
    TuneError (twice), whose text is a traceback; the cause is what a user can act on."""
    seen = {id(error)}
    while True:
        inner = error.__cause__ or error.__context__
        if inner is None or id(inner) in seen:
            return error
        seen.add(id(inner))
        error = inner


def error_line(error: BaseException) -> str:
    """`Type: first line of the message` of the root cause, at most ERROR_CHARS of it."""
    cause = root_cause(error)
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = lines[0][:ERROR_CHARS] if lines else ""
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


def aborted_message(error: BaseException, marked: bool) -> str:
    """The one line for a sweep stopped by `error` (its runs `marked` KILLED, or left as they were)."""
    runs = ("its unfinished runs are marked KILLED" if marked
            else "its runs could not be marked (the store did not answer) and stay RUNNING")
    return (f"the sweep stopped: {error_line(error)}; {runs}; fix the cause and run the same command "
            "again to continue (finished trials are kept)")


def failed_trials_message(failures: Mapping[str, str], total: int) -> str:
    """The closing line of a sweep with failed trials (each is named in the summary above it)."""
    count = len(failures)
    return (f"{count} of {total} trial(s) failed (each named above); fix the cause and run the same "
            "command again: only the failed and unfinished cells run")
