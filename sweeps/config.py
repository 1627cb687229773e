"""From a composed Hydra config to the detector's typed `TrialConfig`.

The only bridge between `conf/` and `detector/`: the Hydra config holds
orchestration keys (cluster, tracking, sweep, ...) beside the trial's own
(model, loss, data, train, eval); only the latter reach the detector.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

from detector.config import ConfigError, TrialConfig

TRIAL_KEYS = ("model", "loss", "data", "train", "eval")


def trial_dict(cfg: DictConfig) -> dict[str, Any]:
    """The resolved trial part of `cfg` as a plain nested dict."""
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as error:  # omegaconf's MissingMandatoryValue, InterpolationResolutionError
        raise ConfigError(_omegaconf_message(error)) from None
    return {key: resolved[key] for key in TRIAL_KEYS}


def trial_config(cfg: DictConfig) -> TrialConfig:
    """Validated `TrialConfig` of a composed config (raises ConfigError)."""
    return TrialConfig.from_dict(trial_dict(cfg))


def apply_overrides(values: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Copy of nested `values` with dotted `overrides` ({"loss.alpha": 0.5}) set."""
    result = json.loads(json.dumps(values))
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


def config_hash(values: dict[str, Any]) -> str:
    """Short stable hash of a nested dict (key order does not matter)."""
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _omegaconf_message(error: Exception) -> str:
    """One line from an OmegaConf error (its first line, without the traceback)."""
    text = str(error).strip().splitlines()[0]
    if "Missing mandatory value" in text:
        key = getattr(error, "full_key", None) or text.split(":", 1)[-1].strip()
        return f"{key} is missing: set {key}=... on the command line"
    return text
