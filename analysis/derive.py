"""Derived row values: the registry a table declaration's `rows:` names.

A row column's value comes from a trial's config: `{path: loss.gamma}` (or
just `loss.gamma`) is the value itself; the other derivations compute the
paper's notation from config values, e.g. `{count: model.anchors.aspect_ratios}`
is the number of aspect ratios (Table 1c) and `{method: loss}` the method's
name in the paper ("CE", "FL", "FL*", "OHEM", "OHEM 1:3"; Table 1d, Appendix
Table 3). Each derivation is `(get, argument) -> value`, where `get(dotted)`
reads one config value of the trial (its override, else its logged param).
"""

from __future__ import annotations

from typing import Any, Callable

Getter = Callable[[str], Any]
Derivation = Callable[[Getter, str], Any]

# loss.name -> the method names the paper uses
LOSS_LABELS = {"ce": "CE", "focal": "FL", "fl_star": "FL*", "ohem": "OHEM"}


def path_value(get: Getter, dotted: str) -> Any:
    """The config value at a dotted path, e.g. `loss.gamma` -> 2.0."""
    return get(dotted)


def count(get: Getter, dotted: str) -> int | None:
    """The length of a list value, e.g. the number of aspect ratios; None if not a list."""
    value = get(dotted)
    return len(value) if isinstance(value, (list, tuple)) else None


def method(get: Getter, prefix: str) -> str:
    """The paper's name of the loss configured under `prefix` (e.g. `loss`).

    OHEM with `ohem.max_pos_fraction` f keeps at most 1 positive : (1-f)/f
    negatives: the paper's "OHEM 1:3" is f = 0.25.
    """
    name = str(get(f"{prefix}.name"))
    label = LOSS_LABELS.get(name, name)
    fraction = get(f"{prefix}.ohem.max_pos_fraction") if name == "ohem" else None
    if fraction:
        return f"{label} 1:{(1.0 - fraction) / fraction:g}"
    return label


DERIVATIONS: dict[str, Derivation] = {"path": path_value, "count": count, "method": method}
