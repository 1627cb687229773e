"""Passwords in URIs stay secret: never printed, logged to MLflow or pickled.

A sweep takes store addresses that may carry credentials:
`sweep.storage=postgresql://optuna:${PW}@db/optuna`, `tracking.uri=
http://user:pw@mlflow:5000`, `...?password=pw`. The driver needs them to
connect; nothing else does.

- `redact(text)` masks every password in a text (a URI, a YAML dump, an error
  message): `user:pw@` becomes `user:***@`, `password=pw` becomes `password=***`.
  It lives in analysis/redact.py (the report's MLflow links use it too).
- `conceal(uri)` is `redact` that remembers the original in this process, and
  `reveal(concealed)` gives it back. Objects Tune pickles into its storage
  (the MLflow callback, the Optuna storage) pickle the concealed form and
  reveal it when unpickled in the same process; an unpickled copy anywhere
  else holds no password at all.
"""

from __future__ import annotations

from analysis.redact import MASK, redact  # noqa: F401 - one source: sweeps/ takes both from here

_ORIGINALS: dict[str, str] = {}  # concealed URI -> the original, in this process only


def conceal(uri: str) -> str:
    """The redacted `uri`, remembered so that `reveal` in this process gives the original back."""
    hidden = redact(uri)
    if hidden != uri:
        _ORIGINALS[hidden] = uri
    return hidden


def reveal(uri: str) -> str:
    """The original of a URI `conceal` made in this process; any other URI as it is."""
    return _ORIGINALS.get(uri, uri)
