"""The `sweep:` section of the config as trials: grid cells or an Optuna space.

A *cell* is one trial of a grid sweep: a dict of dotted overrides of the base
trial config plus a seed. Its `key` is stable across runs (sorted overrides,
then the seed), which is what resume matches MLflow child runs on. A search
sweep has no cells up front: Optuna samples them, and `SweepPlan.cell_for`
turns a sampled config back into a cell the same way on the driver and in
the trial.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from detector.config import ConfigError, TrialConfig
from sweeps.config import apply_overrides

KINDS = ("grid", "search")
PARAM_TYPES = ("float", "int", "categorical")


@dataclass(frozen=True)
class Cell:
    """One trial: dotted overrides of the base config and the seed (train.seed)."""

    overrides: dict[str, Any]
    seed: int

    @property
    def key(self) -> str:
        """Stable name, e.g. `loss.alpha=0.25,loss.gamma=2.0,seed=0` (the `sweep.cell` tag)."""
        parts = [f"{name}={_format_value(value)}" for name, value in sorted(self.overrides.items())]
        return ",".join([*parts, f"seed={self.seed}"])

    def trial_values(self, base: dict[str, Any]) -> dict[str, Any]:
        """The nested trial config of this cell: `base` with overrides and seed applied."""
        return apply_overrides(base, {**self.overrides, "train.seed": self.seed})


def _format_value(value: Any) -> str:
    """Strings bare, everything else as compact JSON (lists stay readable)."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


@dataclass
class SweepSpec:
    """The `sweep:` section with `trimmed[<profile>]` already applied."""

    name: str
    kind: str
    grid: dict[str, list] = field(default_factory=dict)
    cells: list[dict[str, Any]] = field(default_factory=list)
    seeds: int = 1
    resume: bool = True
    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_samples: int = 1
    metric: str = "AP"
    mode: str = "max"
    sampler: str = "tpe"
    asha: dict[str, Any] = field(default_factory=dict)
    eval_every: Optional[int] = None
    storage: Optional[str] = None
    study_name: Optional[str] = None


def sweep_spec(sweep: dict[str, Any], profile: str, explicit: frozenset[str] = frozenset()) -> SweepSpec:
    """Parse the plain `sweep:` dict; `trimmed[profile]` replaces grid keys
    (grid sweeps) or top-level keys (search sweeps), except the keys given on
    the command line (`explicit`, e.g. {"num_samples"}): those win. Raises ConfigError."""
    sweep = dict(sweep)
    trimmed = (sweep.pop("trimmed", None) or {}).get(profile) or {}
    kind = sweep.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"sweep.kind={kind!r} must be one of {', '.join(KINDS)}")
    if kind == "grid" and "grid" not in explicit:
        sweep["grid"] = {**(sweep.get("grid") or {}), **trimmed}
    elif kind == "search":
        sweep.update({key: value for key, value in trimmed.items() if key not in explicit})
    sweep.pop("paper_table", None)  # read by analysis/, not needed to run
    known = set(SweepSpec.__dataclass_fields__)
    unknown = sorted(set(sweep) - known)
    if unknown:
        raise ConfigError(f"unknown key sweep.{unknown[0]}; allowed: {', '.join(sorted(known))}, trimmed, paper_table")
    spec = SweepSpec(**sweep)
    _check_spec(spec)
    return spec


def _check_spec(spec: SweepSpec) -> None:
    """One-line errors for a malformed sweep file or command-line override."""
    if not isinstance(spec.seeds, int) or spec.seeds < 1:
        raise ConfigError(f"sweep.seeds={spec.seeds!r} must be an integer >= 1")
    for name, values in spec.grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.grid.{name}={values!r} must be a non-empty list of values")
    if spec.kind == "grid" and not spec.grid and not spec.cells:
        raise ConfigError(f"sweep {spec.name} has neither grid nor cells: nothing to run")
    if spec.kind == "search":
        _check_search(spec)


def _check_search(spec: SweepSpec) -> None:
    if not spec.space:
        raise ConfigError(f"sweep {spec.name} is a search but sweep.space is empty")
    for name, param in spec.space.items():
        if param.get("type") not in PARAM_TYPES:
            raise ConfigError(f"sweep.space.{name}.type={param.get('type')!r} must be one of {', '.join(PARAM_TYPES)}")
        if param["type"] == "categorical" and not param.get("choices"):
            raise ConfigError(f"sweep.space.{name}.choices must be a non-empty list")
        if param["type"] != "categorical" and not param.get("low", 0) <= param.get("high", -1):
            raise ConfigError(f"sweep.space.{name} needs low <= high, got {param.get('low')!r}, {param.get('high')!r}")
    if not isinstance(spec.num_samples, int) or spec.num_samples < 1:
        raise ConfigError(f"sweep.num_samples={spec.num_samples!r} must be an integer >= 1")
    if spec.mode not in ("max", "min"):
        raise ConfigError(f"sweep.mode={spec.mode!r} must be max or min")
    if not isinstance(spec.eval_every, int) or spec.eval_every < 1:
        raise ConfigError(f"sweep.eval_every={spec.eval_every!r} must be an integer >= 1 (ASHA compares evaluations)")


def grid_cells(spec: SweepSpec, base_seed: int) -> list[Cell]:
    """Cartesian product of the grid, then the explicit cells, each with
    `spec.seeds` seeds (base_seed, base_seed + 1, ...); duplicates dropped."""
    names = list(spec.grid)
    combos = [dict(zip(names, values)) for values in itertools.product(*spec.grid.values())] if names else []
    cells: dict[str, Cell] = {}
    for overrides in [*combos, *spec.cells]:
        for seed in range(base_seed, base_seed + spec.seeds):
            cell = Cell(dict(overrides), seed)
            cells.setdefault(cell.key, cell)
    return list(cells.values())


def check_cells(base: dict[str, Any], cells: list[Cell]) -> None:
    """Validate every cell's trial config; the ConfigError names the cell."""
    for cell in cells:
        try:
            TrialConfig.from_dict(cell.trial_values(base))
        except ConfigError as error:
            raise ConfigError(f"{error} (sweep cell {cell.key})") from None


def search_corner_cells(spec: SweepSpec, base_seed: int) -> list[Cell]:
    """Cells at the ends of each search dimension (others at the base value):
    validating them rejects a space reaching outside the allowed values."""
    cells = []
    for name, param in spec.space.items():
        values = param["choices"] if param["type"] == "categorical" else [param["low"], param["high"]]
        cells.extend(Cell({name: value, **search_fixed(spec)}, base_seed) for value in values)
    return cells


def search_fixed(spec: SweepSpec) -> dict[str, Any]:
    """Overrides every search trial gets: evaluations ASHA can compare."""
    return {"train.eval_every": spec.eval_every}


def optuna_space(spec: SweepSpec) -> dict[str, Any]:
    """Optuna distributions of `sweep.space`. Optuna's categorical choices
    must be scalars, so list choices (aspect ratios) travel as JSON text."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space: dict[str, Any] = {}
    for name, param in spec.space.items():
        log = bool(param.get("log", False))
        if param["type"] == "float":
            space[name] = FloatDistribution(param["low"], param["high"], log=log)
        elif param["type"] == "int":
            space[name] = IntDistribution(param["low"], param["high"], log=log)
        else:
            space[name] = CategoricalDistribution([_encode_choice(c) for c in param["choices"]])
    return space


def _encode_choice(choice: Any) -> Any:
    return json.dumps(choice) if isinstance(choice, (list, dict)) else choice


def search_cell(spec: SweepSpec, sampled: dict[str, Any], base_seed: int) -> Cell:
    """The cell of one sampled point: decoded values plus the fixed overrides."""
    overrides = {}
    for name, param in spec.space.items():
        value = sampled[name]
        if param["type"] == "categorical" and any(isinstance(c, (list, dict)) for c in param["choices"]):
            value = json.loads(value)
        overrides[name] = value
    return Cell({**overrides, **search_fixed(spec)}, base_seed)


def command_line_keys(overrides: list[str]) -> frozenset[str]:
    """Top-level sweep keys set by Hydra overrides: ["sweep.num_samples=2"] -> {"num_samples"}."""
    keys = set()
    for item in overrides:
        name = item.lstrip("+~").partition("=")[0]
        if name.startswith("sweep."):
            keys.add(name.split(".")[1])
    return frozenset(keys)
