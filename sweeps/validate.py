"""Validation of a composed sweep config, before anything starts or is written.

Every trial the sweep will run is built as a `TrialConfig` (so alpha outside
[0, 1], gamma < 0, an empty anchor list or a missing data.root are caught
here, naming the cell), the sweep section is parsed, and the cluster's
per-trial resources are checked. Errors are `ConfigError`, one line each.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from detector.config import ConfigError, TrialConfig
from sweeps.config import config_hash, trial_dict
from sweeps.space import (Cell, SweepSpec, check_cells, command_line_keys, grid_cells, search_corner_cells,
                          sweep_spec)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


@dataclass
class Prepared:
    """A validated sweep: nothing has been started or written yet."""

    cfg: DictConfig
    spec: SweepSpec
    profile: str
    base: dict[str, Any]  # the trial config every cell starts from
    base_hash: str
    cluster: dict[str, Any]
    cells: list[Cell] = field(default_factory=list)  # grid sweeps


def prepare(cfg: DictConfig, overrides: Sequence[str] = ()) -> Prepared:
    """Validate everything a sweep will run; raises ConfigError (one line).
    `overrides` are the command line's (sweep keys given there beat `trimmed`)."""
    from sweeps.cluster import check_client, check_resources

    if "sweep" not in cfg:
        raise ConfigError(f"no sweep given: add +sweep=<name>, one of {', '.join(available('sweep'))}")
    profile = str(cfg.get("profile_name", "custom"))
    spec = sweep_spec(OmegaConf.to_container(cfg.sweep, resolve=True), profile, command_line_keys(list(overrides)))
    base = trial_dict(cfg)
    TrialConfig.from_dict(base)
    cluster = OmegaConf.to_container(cfg.cluster, resolve=True)
    check_resources(cluster)
    check_client(cluster.get("address"), cfg.tracking.uri)
    _check_max_failures(cfg.trial.max_failures)
    _check_trial_function(str(cfg.trial.function))
    prepared = Prepared(cfg, spec, profile, _absolute_paths(base), config_hash(base), cluster)
    base_seed = int(base["train"]["seed"])
    if spec.kind == "grid":
        prepared.cells = grid_cells(spec, base_seed)
        check_cells(prepared.base, prepared.cells)
    else:
        from sweeps.search import check_search

        check_search(spec)
        check_cells(prepared.base, search_corner_cells(spec, base_seed))
    return prepared


def _check_max_failures(value: Any) -> None:
    if not isinstance(value, int) or value < 0:
        raise ConfigError(f"trial.max_failures={value!r} must be an integer >= 0")


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


def available(group: str) -> list[str]:
    """The choices of a config group (file names under conf/<group>/)."""
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))
