"""The Hydra schema: the detector's `TrialConfig` dataclasses, the orchestration
keys and the `sweep:` section (`SweepSpec`, sweeps/spec.py), registered as a
structured config.

`detector/sections.py` is the one source of every trial default; `conf/*.yaml`
holds only what differs from it. Registering happens here, in `sweeps/`, so
`detector/` never imports Hydra. OmegaConf type-checks every override against
the dataclasses at composition (`loss.gamma=x` is an error naming the key).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

from detector.config import DataConfig, EvalConfig, LossConfig, ModelConfig, TrainConfig, TrialConfig
from sweeps.spec import SweepSpec

SCHEMA_NAME = "schema"  # conf/config.yaml's defaults list starts with it
TRIAL_KEYS = tuple(f.name for f in fields(TrialConfig))  # model, loss, data, train, eval


@dataclass
class ClusterConfig:
    """Where trials run (sweeps only; the detector never sees these)."""

    address: Optional[str] = None  # None: start a local Ray cluster; "auto" or "ray://host:port"
    num_cpus: Optional[int] = None  # local cluster size; None: all cores
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # fractions allowed, e.g. 0.5
    # Where Tune keeps trial checkpoints until MLflow has them; None: <output_dir>/ray_results.
    # A cluster of several machines needs one they all reach (s3://..., NFS).
    storage_path: Optional[str] = None


@dataclass
class TrackingConfig:
    """The MLflow store."""

    uri: Optional[str] = None  # None: MLflow's default (sqlite:///mlflow.db here); or http://server:5000
    experiment: str = "retinanet-sweeps"


@dataclass
class TrialRunConfig:
    """How a sweep runs one trial."""

    max_failures: int = 0  # retries of a failed trial
    function: str = "detector.trial:run_trial"  # module:function (benchmarks swap in a trivial one)


@dataclass
class RootConfig:
    """Everything `python -m sweeps.run` / `sweeps.train` compose.

    The `sweep:` section is filled by `+sweep=<name>` and read by
    `sweeps.spec.parse_sweep`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    trial: TrialRunConfig = field(default_factory=TrialRunConfig)
    profile_name: str = "custom"  # set by each conf/profile/*.yaml
    output_dir: str = "outputs"
    reports_dir: str = "reports"  # reports/<sweep>/ is written under it
    sweep: Optional[SweepSpec] = None  # `+sweep=<name>` fills it


def register() -> None:
    """Put the schema in Hydra's ConfigStore (idempotent)."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=RootConfig)


def trial_part(resolved: dict[str, Any]) -> dict[str, Any]:
    """The trial config's sections of a resolved root config."""
    return {key: resolved[key] for key in TRIAL_KEYS}
