"""Shared fixtures: the composed Hydra config of a profile, as a TrialConfig."""

from __future__ import annotations

import pytest

from detector.config import TrialConfig
from sweeps.compose import trial_config


def compose_trial(overrides: list[str]) -> TrialConfig:
    """TrialConfig of conf/ with Hydra `overrides` (e.g. ["profile=smoke"])."""
    return trial_config(overrides)


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory) -> str:
    """One synthetic-data cache shared by the session's smoke runs."""
    return str(tmp_path_factory.mktemp("synthetic-cache"))
