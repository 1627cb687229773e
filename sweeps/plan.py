"""The plan of one sweep: everything it will run, built and validated once.

`build_plan(cfg, overrides)` turns the composed config into a `SweepPlan`:
the base trial config, one `Cell` per trial of a grid (its dotted overrides,
its seed and its validated `TrialConfig`, built here once and handed to Tune
as it is), or the search space of an Optuna search, plus the cluster,
tracking and table settings. A bad value anywhere is a one-line
`ConfigError` naming it (and the cell), before any cluster starts.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import importlib.util
import itertools
import json
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from analysis import layout
from detector.config import ConfigError, TrialConfig
from sweeps.compose import resolved
from sweeps.inputs import check_name, check_trial_files
from sweeps.redact import conceal, redact
from sweeps.schema import trial_part

KINDS = ("grid", "search")
TIMINGS = ("in_trial", layout.QUIET_TIMING)
_COLLECTIONS = ("grid", "cells", "table", "trimmed")
_TRIMMABLE = ("focus",)  # sweep settings a grid sweep's `trimmed.<profile>` may set besides grid keys
PARAM_TYPES = ("float", "int", "categorical")


@dataclass(frozen=True)
class Cell:
    """One trial: dotted overrides of the base config, a seed, and the trial config they make."""

    overrides: dict[str, Any]
    seed: int
    config: TrialConfig

    @property
    def key(self) -> str:
        """Stable name, e.g. `loss.alpha=0.25,loss.gamma=2.0,seed=0` (the `sweep.cell` tag)."""
        return layout.cell_key(self.overrides, self.seed)

    @property
    def config_hash(self) -> str:
        """Short stable hash of the cell's resolved trial config (what a checkpoint of it belongs to)."""
        text = json.dumps(self.config.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SearchSpec:
    """An open search: Optuna samples `space`, ASHA stops trials early."""

    space: dict[str, dict[str, Any]]  # dotted key -> {type: float|int|categorical, low, high, log, choices}
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


@dataclass(frozen=True)
class SweepSpec:
    """The `sweep:` section as written (before `trimmed` and expansion)."""

    name: str  # names the parent run and reports/<name>/ (a renamed copy is another sweep)
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
    search: Optional[SearchSpec] = None

    def seeds_of(self, overrides: Mapping[str, Any]) -> int:
        """How many seeds the cell with these overrides runs (`seeds`, more where `focus` says)."""
        if self.focus and any(_selects(selector, overrides) for selector in self.focus["cells"]):
            return max(self.seeds, int(self.focus["seeds"]))
        return self.seeds


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: nothing has been started or written yet."""

    name: str
    kind: str  # grid | search
    profile: str
    base: dict[str, Any]  # the nested trial config every cell starts from
    base_config: TrialConfig  # `base` built and validated once (a search's trials start from it)
    cells: tuple[Cell, ...]  # grid sweeps; a search makes its cells as Optuna samples them
    search: Optional[SearchSpec]
    seeds: int
    resume: bool
    resume_parent: Optional[str]  # see SweepSpec.resume_parent
    wait: bool  # see SweepSpec.wait
    timing: str  # see SweepSpec.timing
    table: dict[str, Any]  # the sweep's table declaration (analysis/declaration.py reads it)
    cluster: dict[str, Any]
    tracking_uri: Optional[str]
    experiment: str
    max_failures: int
    trial_function: str  # "module:function"
    output_dir: Path
    reports_root: Path  # the report goes to <reports_root>/<name>/
    config_yaml: str  # the composed config, passwords redacted (sweeps/redact.py), logged to the parent run
    command: str = ""  # the command line that made it, passwords redacted (the parent's sweep.command: the reports print it)
    work_root: Optional[str] = None  # set by the driver: trial folders (None: a temp folder on each worker)
    parent_id: str = ""  # set by the driver: the parent run, part of each trial folder's identity

    @property
    def base_seed(self) -> int:
        return int(self.base["train"]["seed"])

    @property
    def base_hash(self) -> str:
        """Short stable hash of the base trial config: resume finds the parent by it."""
        text = json.dumps(self.base, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def swept_keys(self) -> set[str]:
        """Dotted keys some cell (or the search) sets: the parent logs only the others."""
        keys = {name for cell in self.cells for name in cell.overrides} | {"train.seed"}
        if self.search is not None:
            keys |= set(self.search.space) | set(self.search.fixed)
        return keys

    @property
    def shared_values(self) -> dict[str, Any]:
        """The flattened base values no cell changes: what the parent run logs as its params."""
        return {key: value for key, value in layout.flatten(self.base).items() if key not in self.swept_keys}

    def search_cell(self, sampled: Mapping[str, Any]) -> Cell:
        """The cell of one point Optuna sampled (categorical list choices travel as JSON)."""
        return make_cell(self.base, self.search_overrides(sampled), self.base_seed)

    def search_overrides(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """The dotted overrides of a sampled point, the fixed ones included."""
        assert self.search is not None, "search_overrides of a grid sweep"
        overrides = {name: _decode_choice(param, sampled[name]) for name, param in self.search.space.items()}
        return {**overrides, **self.search.fixed}

    def workdir(self, cell: Cell, trial_id: str) -> Path:
        """Folder of one trial, on the node that runs it, named by what a checkpoint in it
        belongs to: the profile, the parent run, the cell (a search's trial too) and the
        cell's resolved config. A resumed grid cell finds its folder again, so a trial with
        train.checkpoint_every continues from its checkpoint (on another machine, only if
        it lands on the same node); another profile, parent or config never does (a
        sweep.resume_parent after a change starts afresh, not from the old optimizer)."""
        name = cell.key if self.kind == "grid" else f"{trial_id}-{cell.key}"
        identity = json.dumps([self.profile, self.parent_id, name, cell.config_hash])
        digest = hashlib.sha1(identity.encode()).hexdigest()[:12]
        root = Path(self.work_root) if self.work_root else Path(tempfile.gettempdir()) / "retinanet-sweeps" / self.name
        return root / digest

    def concealed(self) -> "SweepPlan":
        """This plan as Tune may hold it (its workers, its pickled state): the store
        addresses with their passwords concealed (sweeps/redact.py). The driver
        keeps the original to connect."""
        search = (dataclasses.replace(self.search, storage=conceal(self.search.storage))
                  if self.search is not None else None)
        tracking_uri = conceal(self.tracking_uri) if self.tracking_uri else self.tracking_uri
        return dataclasses.replace(self, search=search, tracking_uri=tracking_uri)

    def trial_function_object(self) -> Callable[..., dict]:
        """Import `module:function` (the real detector unless a test or benchmark swaps it)."""
        module_name, _, attribute = self.trial_function.partition(":")
        return getattr(importlib.import_module(module_name), attribute)


# -- building the plan ---------------------------------------------------------
def build_plan(cfg: DictConfig, overrides: Sequence[str] = (), config_dir: Optional[str] = None) -> SweepPlan:
    """The plan of a composed config (raises ConfigError, one line).
    `overrides`: the command line's, so sweep keys given there beat `trimmed`;
    with `config_dir`, they make the command the reports say reproduces the sweep."""
    values = resolved(cfg)
    if not values.get("sweep"):
        raise ConfigError("no sweep given: add +sweep=<name>")
    profile = str(values.get("profile_name") or "custom")
    spec = parse_sweep(values["sweep"])
    spec = apply_trimmed(spec, profile, command_line_keys(overrides))
    _check_table(spec.table)
    check_name("sweep.name", spec.name)
    check_name("tracking.experiment", values["tracking"]["experiment"])
    base = _absolute_paths(trial_part(values))
    base_config = TrialConfig.from_dict(base)  # the base itself must be valid, whatever the cells change
    cluster = values["cluster"]
    _check_orchestration(values, cluster)
    cells = tuple(grid_cells(spec, base)) if spec.kind == "grid" else ()
    check_trial_files([base_config, *(cell.config for cell in cells)], local=not cluster.get("address"))
    if spec.search is not None:
        _check_search_corners(spec.search, base)
    return SweepPlan(
        name=spec.name, kind=spec.kind, profile=profile, base=base, base_config=base_config, cells=cells, search=spec.search,
        seeds=max((spec.seeds_of(cell.overrides) for cell in cells), default=spec.seeds), resume=spec.resume, resume_parent=spec.resume_parent, wait=spec.wait, timing=spec.timing,
        table=spec.table, cluster=cluster,
        tracking_uri=values["tracking"]["uri"], experiment=values["tracking"]["experiment"],
        max_failures=values["trial"]["max_failures"], trial_function=values["trial"]["function"],
        output_dir=Path(values["output_dir"]).resolve(), reports_root=Path(values["reports_dir"]).resolve(),
        config_yaml=redact(OmegaConf.to_yaml(cfg, resolve=True)),  # logged and printed: no password
        command=redact(sweep_command(overrides, config_dir)))


def sweep_command(overrides: Sequence[str], config_dir: Optional[str] = None) -> str:
    """The command line of these overrides, quoted for a POSIX shell:
    `python -m sweeps.run +sweep=gamma_alpha 'sweep.trimmed.cpu={loss.gamma:[0.0,2.0]}'`."""
    flags = ["--config-dir", config_dir] if config_dir else []
    return shlex.join(["python", "-m", "sweeps.run", *flags, *overrides])


def make_cell(base: Mapping[str, Any], overrides: Mapping[str, Any], seed: int) -> Cell:
    """A cell with its trial config built and validated (ConfigError names the cell)."""
    overrides = dict(overrides)
    try:
        config = TrialConfig.from_dict(apply_overrides(base, {**overrides, "train.seed": seed}))
    except ConfigError as error:
        raise ConfigError(f"{error} (sweep cell {layout.cell_key(overrides, seed)})") from None
    return Cell(overrides, seed, config)


def apply_overrides(values: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of nested `values` with dotted `overrides` ({"loss.alpha": 0.5}) set."""
    result = copy.deepcopy(dict(values))
    for dotted, value in overrides.items():
        node = result
        *parents, leaf = dotted.split(".")
        for name in parents:
            if not isinstance(node.get(name), dict):
                raise ConfigError(f"unknown key {dotted} in sweep overrides")
            node = node[name]
        if leaf not in node:
            raise ConfigError(f"unknown key {dotted} in sweep overrides")
        node[leaf] = value
    return result


def grid_cells(spec: SweepSpec, base: Mapping[str, Any]) -> list[Cell]:
    """Cartesian product of the grid, then the explicit cells, each with
    `spec.seeds_of(cell)` seeds (base seed, base seed + 1, ...); duplicates dropped."""
    names = list(spec.grid)
    combos = [dict(zip(names, values)) for values in itertools.product(*spec.grid.values())] if names else []
    base_seed = int(base["train"]["seed"])
    cells: dict[str, Cell] = {}
    for overrides in [*combos, *spec.cells]:
        for seed in range(base_seed, base_seed + spec.seeds_of(overrides)):
            if layout.cell_key(overrides, seed) not in cells:
                cell = make_cell(base, overrides, seed)
                cells[cell.key] = cell
    return list(cells.values())


# -- the sweep section -----------------------------------------------------------
def parse_sweep(raw: Mapping[str, Any]) -> SweepSpec:
    """The plain `sweep:` dict as a SweepSpec; unknown keys and bad values are one line."""
    raw = dict(raw)
    kind = raw.get("kind", "grid")
    if kind not in KINDS:
        raise ConfigError(f"sweep.kind={kind!r} must be one of {', '.join(KINDS)}")
    search_keys = {f.name for f in dataclasses.fields(SearchSpec)}
    spec_keys = {f.name for f in dataclasses.fields(SweepSpec)} - {"search"}
    allowed = spec_keys | (search_keys if kind == "search" else set())
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"unknown key sweep.{unknown[0]}; allowed: {', '.join(sorted(allowed))}")
    if "name" not in raw:
        raise ConfigError("sweep.name is missing: every sweep file names itself")
    search = SearchSpec(**{k: raw.pop(k) for k in search_keys if k in raw}) if kind == "search" else None
    if raw.get("resume_parent") is not None:  # a run id of digits only would arrive as an int
        raw["resume_parent"] = str(raw["resume_parent"])
    # `grid: {}` or `table:` left empty in YAML arrive as None: the field's default then
    spec = SweepSpec(**{k: v for k, v in raw.items() if v is not None or k not in _COLLECTIONS}, search=search)
    _check_spec(spec)
    return spec


def apply_trimmed(spec: SweepSpec, profile: str, explicit: frozenset[str]) -> SweepSpec:
    """`trimmed[profile]` replaces grid keys (grid sweeps) or search settings;
    keys given on the command line (`explicit`, e.g. {"num_samples"}) win."""
    trimmed = (spec.trimmed or {}).get(profile) or {}
    if not trimmed:
        return spec
    if spec.kind == "grid":
        # sweep settings (e.g. `focus`) by their names; every other key is a grid key
        settings = {k: v for k, v in trimmed.items() if k in _TRIMMABLE and k not in explicit}
        grid_keys = {k: v for k, v in trimmed.items() if k not in _TRIMMABLE}
        grid = spec.grid if "grid" in explicit else {**spec.grid, **grid_keys}
        spec = dataclasses.replace(spec, grid=grid, **settings)
    else:
        changes = {k: v for k, v in trimmed.items() if k not in explicit}
        spec = dataclasses.replace(spec, search=dataclasses.replace(spec.search, **changes))
    _check_spec(spec)
    return spec


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
    if spec.timing not in TIMINGS:
        raise ConfigError(f"sweep.timing={spec.timing!r} must be one of {', '.join(TIMINGS)}")
    if not isinstance(spec.seeds, int) or spec.seeds < 1:
        raise ConfigError(f"sweep.seeds={spec.seeds!r} must be an integer >= 1")
    if spec.focus is not None:
        _check_focus(spec.focus)
    for name, values in spec.grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.grid.{name}={values!r} must be a non-empty list of values")
    if spec.resume_parent is not None and not spec.resume:
        raise ConfigError("sweep.resume_parent and sweep.resume=false contradict each other: give one")
    if spec.kind == "grid" and not spec.grid and not spec.cells:
        raise ConfigError(f"sweep {spec.name} has neither grid nor cells: nothing to run")
    if spec.search is not None:
        _check_search(spec.search, spec.name)


def _check_search(search: SearchSpec, name: str) -> None:
    from sweeps.search import check_search  # Optuna-specific checks live beside Optuna

    if not search.space:
        raise ConfigError(f"sweep {name} is a search but sweep.space is empty")
    if not isinstance(search.space, Mapping):
        raise ConfigError(f"sweep.space={search.space!r} must map each key to {{type: ..., low: ..., high: ...}}")
    for key, param in search.space.items():
        _check_param_types(key, param)
        if param.get("type") not in PARAM_TYPES:
            raise ConfigError(f"sweep.space.{key}.type={param.get('type')!r} must be one of {', '.join(PARAM_TYPES)}")
        if param["type"] == "categorical" and not param.get("choices"):
            raise ConfigError(f"sweep.space.{key}.choices must be a non-empty list")
        if param["type"] != "categorical" and not param.get("low", 0) <= param.get("high", -1):
            raise ConfigError(f"sweep.space.{key} needs low <= high, got {param.get('low')!r}, {param.get('high')!r}")
    if not isinstance(search.num_samples, int) or search.num_samples < 1:
        raise ConfigError(f"sweep.num_samples={search.num_samples!r} must be an integer >= 1")
    if search.mode not in ("max", "min"):
        raise ConfigError(f"sweep.mode={search.mode!r} must be max or min")
    if not isinstance(search.eval_every, int) or search.eval_every < 1:
        raise ConfigError(f"sweep.eval_every={search.eval_every!r} must be an integer >= 1 (ASHA compares evaluations)")
    check_search(search)


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


def _check_search_corners(search: SearchSpec, base: Mapping[str, Any]) -> None:
    """Validate the ends of each search dimension (others at the base value):
    a space reaching outside the allowed values is rejected before it runs."""
    for name, param in search.space.items():
        ends = param["choices"] if param["type"] == "categorical" else [param["low"], param["high"]]
        for value in ends:
            make_cell(base, {name: value, **search.fixed}, int(base["train"]["seed"]))


def _check_table(table: Mapping[str, Any]) -> None:
    """The table declaration is analysis/'s to read: a bad one fails here, before the trials."""
    from analysis.parse import DeclarationError, parse_table

    try:
        parse_table(table)
    except DeclarationError as error:
        raise ConfigError(str(error)) from None  # its message names the sweep.table key


def _decode_choice(param: Mapping[str, Any], value: Any) -> Any:
    """Optuna's categorical choices must be scalars: list choices travel as JSON text."""
    if param["type"] == "categorical" and any(isinstance(c, (list, dict)) for c in param["choices"]):
        return json.loads(value)
    return value


# -- orchestration settings ------------------------------------------------------
def _check_orchestration(values: Mapping[str, Any], cluster: Mapping[str, Any]) -> None:
    from sweeps.cluster import check_client, check_resources

    check_resources(dict(cluster))
    check_client(cluster.get("address"), values["tracking"]["uri"])
    max_failures = values["trial"]["max_failures"]
    if max_failures < 0:
        raise ConfigError(f"trial.max_failures={max_failures!r} must be an integer >= 0")
    _check_trial_function(str(values["trial"]["function"]))


def _check_trial_function(path: str) -> None:
    """`module:function` must name a module that exists (found, not imported:
    the detector pulls in torch, which the driver does not need)."""
    module, sep, function = path.partition(":")
    if not sep or not module or not function:
        raise ConfigError(f"trial.function={path!r} must be module:function, e.g. detector.trial:run_trial")
    try:
        found = importlib.util.find_spec(module)
    except ModuleNotFoundError:  # a parent package is missing: the same answer
        found = None
    if found is None:
        raise ConfigError(f"trial.function={path!r}: no module {module!r} here")


def _absolute_paths(base: dict[str, Any]) -> dict[str, Any]:
    """Relative data paths are meant from where the command runs; Ray workers
    run elsewhere, so anchor them here ("~" is left for the worker to expand)."""
    data = dict(base["data"])
    for key in ("root", "cache_dir"):
        value = data.get(key)
        if value and not str(value).startswith(("/", "~")):
            data[key] = str(Path(value).resolve())
    return {**base, "data": data}
