"""One strict loader: a plain mapping read as a typed dataclass, every error one line.

OmegaConf checks the mapping against the dataclass's fields and type hints
(unknown keys, values of the wrong type, missing mandatory values); `one_line`
turns its exception into a line that names the key (and, for an unknown key,
the allowed ones). Nothing here knows what the dataclass describes.
"""

from __future__ import annotations

from typing import Any, Mapping, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from detector.config import ConfigError

T = TypeVar("T")


def load(schema: type[T], values: Mapping[str, Any], where: str, error: type[Exception] = ConfigError) -> T:
    """`values` as an instance of dataclass `schema`; `where` prefixes the key names ("sweep")."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), dict(values)))
    except OmegaConfBaseException as failure:
        raise error(one_line(failure, where)) from None


def one_line(failure: OmegaConfBaseException, where: str = "") -> str:
    """"unknown key sweep.colour; allowed: ...", "sweep.name is missing" or "<key>: <OmegaConf's first line>"."""
    key = ".".join(part for part in (where, str(failure.full_key or "")) if part)
    if isinstance(failure, (ConfigKeyError, ConfigAttributeError)):
        node = failure.parent_node
        allowed = f"; allowed: {', '.join(sorted(map(str, node.keys())))}" if node is not None else ""
        return f"unknown key {key}{allowed}"
    if isinstance(failure, MissingMandatoryValue):
        return f"{key} is missing"
    lines = [line.strip() for line in str(failure).splitlines() if line.strip()]
    return f"{key}: {lines[0] if lines else type(failure).__name__}"
