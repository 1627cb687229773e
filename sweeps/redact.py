"""Passwords in URIs stay secret: never printed, logged to MLflow or pickled.

A sweep takes store addresses that may carry credentials:
`sweep.storage=postgresql://optuna:${PW}@db/optuna`, `tracking.uri=
http://user:pw@mlflow:5000`, `...?password=pw`. The driver needs them to
connect; nothing else does.

- `redact(text)` masks every password in a text (a URI, a YAML dump, an error
  message): `user:pw@` becomes `user:***@`, `password=pw` becomes `password=***`.
- `conceal(uri)` is `redact` that remembers the original in this process, and
  `reveal(concealed)` gives it back. Objects Tune pickles into its storage
  (the MLflow callback, the Optuna storage) pickle the concealed form and
  reveal it when unpickled in the same process; an unpickled copy anywhere
  else holds no password at all.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@host... ; the password runs to the token's last "@"
# (SQLAlchemy URLs allow "/" in it, plain URLs allow "@"), never across whitespace.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):(?P<password>[^\s]*?)@(?=[^\s@]*(?:\s|$))")
# ...?password=pw&...  (libpq, SQLAlchemy and MLflow accept credentials as query arguments)
_QUERY = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd|secret|token)=)(?P<value>[^&;\s'\"]*)", re.IGNORECASE)

_ORIGINALS: dict[str, str] = {}  # concealed URI -> the original, in this process only


def redact(text: str) -> str:
    """`text` with every password of a URI in it replaced by ***."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@" if m["password"] else m[0], text)
    return _QUERY.sub(lambda m: f"{m['head']}{MASK}" if m["value"] else m[0], text)


def conceal(uri: str) -> str:
    """The redacted `uri`, remembered so that `reveal` in this process gives the original back."""
    hidden = redact(uri)
    if hidden != uri:
        _ORIGINALS[hidden] = uri
    return hidden


def reveal(uri: str) -> str:
    """The original of a URI `conceal` made in this process; any other URI as it is."""
    return _ORIGINALS.get(uri, uri)
