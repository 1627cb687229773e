"""The `sweep:` section of a config: its typed spec, parsed and checked.

`SweepSpec` is the section's schema (sweeps/schema.py types `sweep:` with it).
`parse_sweep` reads the plain `sweep:` dict through the strict loader
(sweeps/strict.py) and checks the values a type cannot say; `apply_trimmed`
applies a profile's `trimmed` keys. Every bad key or value is a one-line
`ConfigError` naming it. Cells, trial configs and orchestration are the plan's
(sweeps/plan.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from omegaconf import MISSING

from analysis import layout
from detector.config import ConfigError
from sweeps import strict

KINDS = ("grid", "search")
TIMINGS = ("in_trial", layout.QUIET_TIMING)
_COLLECTIONS = ("grid", "cells", "table", "trimmed")
_TRIMMABLE = ("focus",)  # sweep settings a grid sweep's `trimmed.<profile>` may set besides grid keys
PARAM_TYPES = ("float", "int", "categorical")
SAMPLERS = ("tpe", "random")
ASHA_KEYS = ("grace_period", "reduction_factor")  # what sweep.asha may set


@dataclass  # not frozen: Hydra merges the sweep file into it (sweeps/schema.py)
class SearchSpec:
    """An open search: Optuna samples `space`, ASHA stops trials early."""

    # dotted key -> {type: float|int|categorical, low, high, log, choices} (checked below, with examples)
    space: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 1  # trials added by one run of the command
    metric: str = "AP"
    mode: str = "max"
    sampler: str = "tpe"  # tpe | random
    # grace_period counts evaluations before ASHA may stop a trial
    asha: dict[str, Any] = field(default_factory=lambda: {"grace_period": 2, "reduction_factor": 2})
    eval_every: int = 50  # iterations between the evaluations ASHA compares
    storage: str = "optuna-journal.log"  # a journal file, or an RDB URL (sqlite:///optuna.db, postgresql://...)
    study_name: Optional[str] = None  # None: <sweep>-<profile>

    @property
    def fixed(self) -> dict[str, Any]:
        """Overrides every search trial gets: evaluations ASHA can compare."""
        return {"train.eval_every": self.eval_every}


@dataclass
class SweepSpec(SearchSpec):
    """The `sweep:` section as written (before `trimmed` and expansion). A search's
    settings, the fields it takes from SearchSpec, sit at the section's top level
    (`sweep.num_samples=2`); a grid leaves them at their defaults."""

    name: str = MISSING  # names the parent run and reports/<name>/ (a renamed copy is another sweep)
    kind: str = "grid"  # grid | search
    grid: dict[str, list] = field(default_factory=dict)  # dotted key -> values: their cartesian product
    cells: list[dict[str, Any]] = field(default_factory=list)  # explicit override dicts, run besides the grid
    seeds: int = 1  # sweep.seeds=N repeats every cell with N seeds
    resume: bool = True  # false: a new parent run instead of continuing the last one
    # A parent run id to continue although its base config differs (sweeps/continuation.py)
    resume_parent: Optional[str] = None
    wait: bool = False  # another invocation runs this sweep: false refuses, true waits, then resumes
    timing: str = "in_trial"  # in_trial | quiet: ms/image re-measured after the trials (sweeps/timing.py)
    table: dict[str, Any] = field(default_factory=dict)  # what analysis/ builds (analysis/declaration.py)
    trimmed: dict[str, dict[str, Any]] = field(default_factory=dict)  # profile -> keys replacing the grid's
    # More seeds where a finding needs them: {seeds: N, cells: [selector, ...]}; a grid cell
    # whose overrides hold every key=value of one selector runs max(N, seeds) seeds.
    focus: Optional[dict[str, Any]] = None

    @property
    def search(self) -> Optional[SearchSpec]:
        """The settings of a search (sweep.kind=search); None for a grid."""
        if self.kind != "search":
            return None
        return SearchSpec(**{f.name: getattr(self, f.name) for f in dataclasses.fields(SearchSpec)})

    def seeds_of(self, overrides: Mapping[str, Any]) -> int:
        """How many seeds the cell with these overrides runs (`seeds`, more where `focus` says)."""
        if self.focus and any(_selects(selector, overrides) for selector in self.focus["cells"]):
            return max(self.seeds, int(self.focus["seeds"]))
        return self.seeds


_NO_SEARCH = SearchSpec()  # a grid's search settings: the defaults


# -- parsing and checking -------------------------------------------------------
def parse_sweep(raw: Mapping[str, Any]) -> SweepSpec:
    """The plain `sweep:` dict as a SweepSpec; unknown keys and bad values are one line."""
    # `grid:` or `table:` left empty in YAML arrive as None: the field's default then
    return _load({k: v for k, v in raw.items() if v is not None or k not in _COLLECTIONS})


def _load(values: Mapping[str, Any]) -> SweepSpec:
    """The strict loader checks keys and types (sweeps/strict.py), `_check_spec` the rest."""
    spec = strict.load(SweepSpec, values, "sweep")
    _check_spec(spec)
    return spec


def apply_trimmed(spec: SweepSpec, profile: str, explicit: frozenset[str]) -> SweepSpec:
    """`trimmed[profile]` replaces grid keys (grid sweeps) or search settings;
    keys given on the command line (`explicit`, e.g. {"num_samples"}) win."""
    trimmed = (spec.trimmed or {}).get(profile) or {}
    if not trimmed:
        return spec
    if spec.search is None:
        # sweep settings (e.g. `focus`) by their names; every other key is a grid key
        settings = {k: v for k, v in trimmed.items() if k in _TRIMMABLE and k not in explicit}
        grid_keys = {k: v for k, v in trimmed.items() if k not in _TRIMMABLE}
        grid = spec.grid if "grid" in explicit else {**spec.grid, **grid_keys}
        changes = {"grid": grid, **settings}
    else:
        changes = {k: v for k, v in trimmed.items() if k not in explicit}
    return _load({**dataclasses.asdict(spec), **changes})


def _selects(selector: Mapping[str, Any], overrides: Mapping[str, Any]) -> bool:
    """The cell's overrides hold every key=value of the selector."""
    return all(key in overrides and overrides[key] == value for key, value in selector.items())


def _check_focus(focus: Any) -> None:
    """`focus` is {seeds: int >= 1, cells: [non-empty mappings]}; one line otherwise."""
    ok = (isinstance(focus, Mapping) and set(focus) == {"seeds", "cells"} and isinstance(focus["seeds"], int)
          and focus["seeds"] >= 1 and isinstance(focus["cells"], list) and focus["cells"]
          and all(isinstance(c, Mapping) and c for c in focus["cells"]))
    if not ok:
        raise ConfigError(f"sweep.focus={focus!r} must be {{seeds: N >= 1, cells: [{{key: value, ...}}, ...]}}")


def command_line_keys(overrides: Sequence[str]) -> frozenset[str]:
    """Top-level sweep keys set by Hydra overrides: ["sweep.num_samples=2"] -> {"num_samples"}."""
    names = (item.lstrip("+~").partition("=")[0] for item in overrides)
    return frozenset(name.split(".")[1] for name in names if name.startswith("sweep."))


def _check_spec(spec: SweepSpec) -> None:
    """What the types cannot say: allowed names, ranges, and search settings only on a search."""
    if spec.kind not in KINDS:
        raise ConfigError(f"sweep.kind={spec.kind!r} must be one of {', '.join(KINDS)}")
    if spec.search is None:
        for name in (f.name for f in dataclasses.fields(SearchSpec)):
            if getattr(spec, name) != getattr(_NO_SEARCH, name):
                raise ConfigError(f"sweep.{name} is a search setting: it needs sweep.kind=search")
    if spec.timing not in TIMINGS:
        raise ConfigError(f"sweep.timing={spec.timing!r} must be one of {', '.join(TIMINGS)}")
    if spec.seeds < 1:
        raise ConfigError(f"sweep.seeds={spec.seeds!r} must be an integer >= 1")
    if spec.focus is not None:
        _check_focus(spec.focus)
    for name, values in spec.grid.items():
        if not values:
            raise ConfigError(f"sweep.grid.{name}={values!r} must be a non-empty list of values")
    if spec.resume_parent is not None and not spec.resume:
        raise ConfigError("sweep.resume_parent and sweep.resume=false contradict each other: give one")
    if spec.search is None and not spec.grid and not spec.cells:
        raise ConfigError(f"sweep {spec.name} has neither grid nor cells: nothing to run")
    if spec.search is not None:
        _check_search(spec.search, spec.name)


def _check_search(search: SearchSpec, name: str) -> None:
    if not search.space:
        raise ConfigError(f"sweep {name} is a search but sweep.space is empty")
    for key, param in search.space.items():
        _check_param_types(key, param)
        if param.get("type") not in PARAM_TYPES:
            raise ConfigError(f"sweep.space.{key}.type={param.get('type')!r} must be one of {', '.join(PARAM_TYPES)}")
        if param["type"] == "categorical" and not param.get("choices"):
            raise ConfigError(f"sweep.space.{key}.choices must be a non-empty list")
        if param["type"] != "categorical" and not param.get("low", 0) <= param.get("high", -1):
            raise ConfigError(f"sweep.space.{key} needs low <= high, got {param.get('low')!r}, {param.get('high')!r}")
    if search.num_samples < 1:
        raise ConfigError(f"sweep.num_samples={search.num_samples!r} must be an integer >= 1")
    if search.mode not in ("max", "min"):
        raise ConfigError(f"sweep.mode={search.mode!r} must be max or min")
    if search.eval_every < 1:
        raise ConfigError(f"sweep.eval_every={search.eval_every!r} must be an integer >= 1 (ASHA compares evaluations)")
    _check_optuna(search)


def _check_param_types(key: str, param: Any) -> None:
    """One dimension of sweep.space is a mapping with numeric low/high, a list of
    choices, a boolean log (a wrong type would fail deep inside Optuna)."""
    if not isinstance(param, Mapping):
        raise ConfigError(f"sweep.space.{key}={param!r} must be a mapping such as "
                          "{type: float, low: 0.0, high: 1.0} or {type: categorical, choices: [...]}")
    for bound in ("low", "high"):
        value = param.get(bound)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"sweep.space.{key}.{bound}={value!r} must be a number")
        if param.get("type") == "int" and value is not None and not isinstance(value, int):
            raise ConfigError(f"sweep.space.{key}.{bound}={value!r} must be an integer (type: int)")
    if "choices" in param and not isinstance(param["choices"], list):
        raise ConfigError(f"sweep.space.{key}.choices={param['choices']!r} must be a list")
    if not isinstance(param.get("log", False), bool):
        raise ConfigError(f"sweep.space.{key}.log={param['log']!r} must be true or false")


def _check_optuna(spec: SearchSpec) -> None:
    """The settings sweeps/search.py hands to Optuna and ASHA: a sampler it knows, a storage it can open."""
    if spec.sampler not in SAMPLERS:
        raise ConfigError(f"sweep.sampler={spec.sampler!r} must be one of {', '.join(SAMPLERS)}")
    if not spec.storage:
        raise ConfigError("sweep.storage is empty: give a journal file (optuna-journal.log) or an RDB URL")
    if "://" not in spec.storage and not Path(spec.storage).expanduser().resolve().parent.is_dir():
        raise ConfigError(f"sweep.storage={spec.storage}: its folder does not exist")
    if set(spec.asha) - set(ASHA_KEYS):
        raise ConfigError(f"sweep.asha={spec.asha!r} must be a mapping of {' and '.join(ASHA_KEYS)}, "
                          "e.g. {grace_period: 2, reduction_factor: 2}")
    for key in ASHA_KEYS:
        value = spec.asha.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < (1 if key == "grace_period" else 1.01):
            raise ConfigError(f"sweep.asha.{key}={value!r} must be >= {1 if key == 'grace_period' else 'above 1'}")
