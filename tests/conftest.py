"""Shared fixtures: the composed Hydra config of a profile, as a TrialConfig."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from detector.config import TrialConfig
from sweeps.config import trial_config

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def compose_trial(overrides: list[str]) -> TrialConfig:
    """TrialConfig of conf/ with Hydra `overrides` (e.g. ["profile=smoke"])."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return trial_config(compose("config", overrides=overrides))


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory) -> str:
    """One synthetic-data cache shared by the session's smoke runs."""
    return str(tmp_path_factory.mktemp("synthetic-cache"))
