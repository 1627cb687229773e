"""The plan of one sweep: everything it will run, built and validated once.

`build_plan(cfg, overrides)` turns the composed config (its `sweep:` section
parsed by sweeps/spec.py) into a `SweepPlan`:
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from analysis import layout
from detector.config import ConfigError, TrialConfig
from sweeps.compose import resolved
from sweeps.inputs import check_name, check_trial_files
from sweeps.redact import conceal, redact
from sweeps.schema import trial_part
from sweeps.spec import SearchSpec, SweepSpec, apply_trimmed, command_line_keys, parse_sweep


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
class SweepPlan:
    """A validated sweep: nothing has been started or written yet."""

    name: str
    profile: str
    base: dict[str, Any]  # the nested trial config every cell starts from
    base_config: TrialConfig  # `base` built and validated once (a search's trials start from it)
    cells: tuple[Cell, ...]  # grid sweeps; a search makes its cells as Optuna samples them
    search: Optional[SearchSpec]  # None: a grid of `cells`; else an open search, what tells the two apart
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
    def kind(self) -> str:
        """grid | search, as the parent run's `sweep.kind` tag says it."""
        return "grid" if self.search is None else "search"

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

    def cell_of(self, trial_config: Mapping[str, Any]) -> Cell:
        """The cell of a Tune trial config: a grid hands the Cell itself (built once,
        on the driver); a search hands the point Optuna sampled, built here."""
        return trial_config["cell"] if self.search is None else self.search_cell(trial_config)

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
        name = cell.key if self.search is None else f"{trial_id}-{cell.key}"
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
    cells = tuple(grid_cells(spec, base)) if spec.search is None else ()
    check_trial_files([base_config, *(cell.config for cell in cells)], local=not cluster.get("address"))
    if spec.search is not None:
        _check_search_corners(spec.search, base)
    return SweepPlan(
        name=spec.name, profile=profile, base=base, base_config=base_config, cells=cells, search=spec.search,
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
