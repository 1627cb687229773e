"""Passwords in URIs masked: `redact(text)` turns `user:pw@` into `user:***@` and
`password=pw` into `password=***` in any text (a URI, a YAML dump, an error).

A pure function on the lowest floor, so that analysis/ (the report's MLflow
links) and sweeps/ (everything printed, logged or pickled; sweeps/redact.py)
mask the same way from one source.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@host... ; the password runs to the token's last "@"
# (SQLAlchemy URLs allow "/" in it, plain URLs allow "@"), never across whitespace.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):(?P<password>[^\s]*?)@(?=[^\s@]*(?:\s|$))")
# ...?password=pw&...  (libpq, SQLAlchemy and MLflow accept credentials as query arguments)
_QUERY = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd|secret|token)=)(?P<value>[^&;\s'\"]*)", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every password of a URI in it replaced by ***."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@" if m["password"] else m[0], text)
    return _QUERY.sub(lambda m: f"{m['head']}{MASK}" if m["value"] else m[0], text)
