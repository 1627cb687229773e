"""The one strict reading of declared YAML: `sweep.table` (analysis/parse.py), its `verdicts`
(analysis/design.py) and reference/findings.yaml (analysis/findings.py).

A schema is a dataclass (its fields are the keys allowed, its annotations their
types) or, for keys known only at run time (a plot kind's options), their
names. What it rejects is one line naming the key and where it is, e.g.
`sweep.table.verdicts: unknown key 'familly'; allowed: level, family, power, pooled_variance`.
`known` is the one check of a name against its registry (a paper table, a
metric, a plot or comparison kind). Rules that tie keys together (a column
must be a row, a kind needs its fields) stay with the caller, which knows them.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, Iterable, Sequence, Union

from analysis.errors import DeclarationError

# the annotations checked, and how a wrong value is told; any other annotation is the caller's to check
TYPES: dict[Any, tuple[type, ...]] = {bool: (bool,), float: (int, float), str: (str,), Mapping: (Mapping,)}
TOLD = {bool: "true or false", float: "a number", str: "text", Mapping: "a mapping"}


def strict(raw: Any, where: str, schema: type | Sequence[str], skip: Sequence[str] = ()) -> dict[str, Any]:
    """`raw` as a plain dict, checked against `schema` (a dataclass or the allowed names, in the order
    told; `skip`: fields the caller fills itself). Raises DeclarationError: not a mapping, a key not
    in the schema, a value of the wrong type (for the annotations of TYPES, optional or not)."""
    if dataclasses.is_dataclass(schema):
        names = [f.name for f in dataclasses.fields(schema) if f.name not in skip]
        hints = typing.get_type_hints(schema)
    else:
        names, hints = list(schema), {}
    if not isinstance(raw, Mapping):
        raise DeclarationError(f"{where}: must be a mapping of {', '.join(names)}")
    for key, value in raw.items():
        if key not in names:
            raise DeclarationError(f"{where}: unknown key {key!r}; allowed: {', '.join(names)}")
        wanted = _plain_type(hints.get(key))
        if wanted in TYPES and value is not None and (
                not isinstance(value, TYPES[wanted]) or (wanted is not bool and isinstance(value, bool))):
            raise DeclarationError(f"{where}.{key}: must be {TOLD[wanted]}, not {value!r}")
    return dict(raw)


def known(value: Any, allowed: Iterable[str], where: str, what: str) -> Any:
    """`value` when it is one of `allowed`; else DeclarationError, e.g.
    `sweep.table.metrics: unknown metric 'APX'; allowed: AP, AP50, ...`."""
    allowed = list(allowed)
    if value not in allowed:
        raise DeclarationError(f"{where}: unknown {what} {value!r}; allowed: {', '.join(allowed)}")
    return value


def _plain_type(hint: Any) -> Any:
    """Optional[X] -> X, Mapping[K, V] -> Mapping; any other hint as it is."""
    if typing.get_origin(hint) is Union:
        others = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = others[0] if len(others) == 1 else hint
    return Mapping if typing.get_origin(hint) is Mapping else hint
