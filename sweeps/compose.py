"""Compose the Hydra config once, with one-line errors.

`python -m sweeps.run` and `python -m sweeps.train` take Hydra overrides
plus `--config-dir DIR` (Hydra's own flag for a user's folder of configs: a
`DIR/sweep/my_sweep.yaml` becomes `+sweep=my_sweep`). The project's configs
come first in the search path; the user's folder adds to them or replaces a
file of the same name.

Composition uses Hydra's Compose API (no `@hydra.main`), so a bad override is
reported before anything is written, and the config is composed once.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from detector.config import ConfigError
from sweeps import strict
from sweeps.schema import register

CONFIG_NAME = "config"
CONFIG_DIR_FLAGS = ("--config-dir", "-cd")
HELP_FLAGS = ("-h", "--help")


class HelpRequested(Exception):
    """`-h`/`--help` on the command line; carries the --config-dir given beside it (or None)."""

    def __init__(self, config_dir: Optional[str]) -> None:
        super().__init__("help requested")
        self.config_dir = config_dir


def conf_dir() -> Path:
    """The project's configs: `conf/` of this checkout, or the copy installed beside the package."""
    for candidate in (Path(__file__).resolve().parents[1] / "conf", Path(__file__).resolve().parent / "conf"):
        if (candidate / f"{CONFIG_NAME}.yaml").is_file():
            return candidate
    raise ConfigError(f"cannot find the project's {CONFIG_NAME}.yaml (the installation is incomplete)")


def split_argv(argv: Sequence[str]) -> tuple[list[str], Optional[str]]:
    """(Hydra overrides, --config-dir) of a command line; unknown flags are one-line errors;
    `-h`/`--help` raises HelpRequested once the rest is parsed (so --config-dir counts)."""
    overrides: list[str] = []
    config_dir: Optional[str] = None
    wants_help = False
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, eq, value = arg.partition("=")
        if name in CONFIG_DIR_FLAGS:
            if not eq and not args:
                raise ConfigError(f"{name} needs a folder: {name} my_conf")
            config_dir = value if eq else args.pop(0)
        elif arg in HELP_FLAGS:
            wants_help = True
        elif arg.startswith("-"):
            raise ConfigError(f"unknown option {arg}; give Hydra overrides (key=value, +sweep=name) "
                              "and optionally --config-dir DIR; --help lists the choices")
        else:
            overrides.append(arg)
    if wants_help:
        raise HelpRequested(config_dir)
    return overrides, config_dir


def usage(command: str, config_dir: Optional[str] = None) -> str:
    """What `python -m <command> --help` prints: the form of the command line and the
    choices of the config groups a user picks most (read from the config folders)."""
    groups = {group: ", ".join(group_options(group, config_dir)) for group in ("sweep", "profile", "loss", "data")}
    sweep = " +sweep=<name>" if command == "sweeps.run" else ""
    return "\n".join([
        f"usage: python -m {command}{sweep} [key=value ...] [--config-dir DIR]",
        "",
        f"  sweeps:   {groups['sweep']}" if sweep else f"  loss:     {groups['loss']} (loss=<name>)",
        f"  profiles: {groups['profile']} (profile=<name>; default cpu)",
        f"  data:     {groups['data']} (data=<name>)",
        "",
        "  key=value overrides any config value, e.g. loss.gamma=2 train.seed=1"
        + (" sweep.seeds=3 profile=smoke" if sweep else ""),
        "  --config-dir DIR adds a folder of configs (DIR/sweep/my.yaml is +sweep=my)",
        "  every key and its default: detector/sections.py and sweeps/schema.py; the method: docs/",
    ])


def compose_config(overrides: Sequence[str], config_dir: Optional[str] = None,
                   with_hydra: bool = False) -> DictConfig:
    """The composed config; every Hydra or OmegaConf error as a one-line ConfigError.
    `with_hydra` keeps Hydra's own node (`hydra.run.dir` for one trial's folder)."""
    extra = _user_dir(config_dir)
    with _hydra() as loader:
        searchpath = [f"hydra.searchpath=[file://{extra}]"] if extra else []
        try:
            cfg = compose(CONFIG_NAME, overrides=[*overrides, *searchpath],
                          return_hydra_config=with_hydra)
        except MissingConfigException as error:
            raise ConfigError(_missing_message(error, loader, searchpath)) from None
        except HydraException as error:
            raise ConfigError(_hydra_message(error)) from None
        except yaml.YAMLError as error:  # a config file that is not YAML (Hydra lets the parser's error through)
            raise ConfigError(_yaml_message(error)) from None
    OmegaConf.set_readonly(cfg, True)  # composed once: nothing downstream edits it
    return cfg


def group_options(group: str, config_dir: Optional[str] = None) -> list[str]:
    """The choices of a config group (e.g. the sweeps), the user's folder included."""
    extra = _user_dir(config_dir)
    with _hydra() as loader:
        searchpath = [f"hydra.searchpath=[file://{extra}]"] if extra else []
        return sorted(loader.get_group_options(group, config_name=CONFIG_NAME, overrides=searchpath))


def resolved(cfg: DictConfig) -> dict:
    """The config as plain nested values, interpolations resolved; a missing value is one line.
    Hydra's own node, if any, is left out."""
    try:
        mine = [key for key in cfg if key != "hydra"]
        return OmegaConf.to_container(OmegaConf.masked_copy(cfg, mine), resolve=True, throw_on_missing=True)
    except Exception as error:  # omegaconf's MissingMandatoryValue, InterpolationResolutionError
        key = getattr(error, "full_key", None)
        if "Missing mandatory value" in str(error) and key:
            raise ConfigError(f"{key} is missing: set {key}=... on the command line") from None
        raise ConfigError(_first_line(error)) from None


@contextmanager
def _hydra() -> Iterator[object]:
    """Hydra initialised on the project's conf/ (the schema registered first)."""
    register()
    GlobalHydra.instance().clear()  # a caller (a test, a notebook) may have left one initialised
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        yield GlobalHydra.instance().config_loader()


def _user_dir(config_dir: Optional[str]) -> Optional[str]:
    if config_dir is None:
        return None
    path = Path(config_dir).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"--config-dir {config_dir}: no such folder")
    return str(path)


def _missing_message(error: MissingConfigException, loader: object, searchpath: list[str]) -> str:
    """"unknown sweep 'x'; available: a, b" (Hydra's own message spans a dozen lines)."""
    missing = str(getattr(error, "missing_cfg_file", "") or "")
    group, _, choice = missing.rpartition("/")
    if not group:
        return _first_line(error)
    options = sorted(loader.get_group_options(group, config_name=CONFIG_NAME, overrides=searchpath))
    return f"unknown {group} {choice!r}; available: {', '.join(options)}"


def _yaml_message(error: yaml.YAMLError) -> str:
    """"YAML syntax error in FILE, line L, column C: PROBLEM" (the parser's text spans several lines)."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or _first_line(error)
    where = f" in {mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"YAML syntax error{where}: {problem}"


def _hydra_message(error: HydraException) -> str:
    """One line: the key and what OmegaConf or Hydra objects to."""
    cause = error.__cause__
    if isinstance(cause, OmegaConfBaseException) and cause.full_key:
        return strict.one_line(cause)
    return _first_line(error).rstrip(".")


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def trial_config(overrides: Sequence[str], config_dir: Optional[str] = None) -> "TrialConfig":
    """The validated TrialConfig of the composed config (one trial, no sweep)."""
    from detector.config import TrialConfig
    from sweeps.schema import trial_part

    return TrialConfig.from_dict(trial_part(resolved(compose_config(overrides, config_dir))))
