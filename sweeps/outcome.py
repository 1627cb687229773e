"""What one sweep invocation reports back: where the results are and how it went."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


@dataclass
class SweepOutcome:
    """Where the results of one invocation are, and how it went."""

    sweep: str
    profile: str
    parent_run_id: str
    experiment: str
    tracking_uri: str
    reports_dir: Path
    counts: dict[str, int]  # finished, failed, killed (this invocation), before (earlier ones)
    interrupted: bool = False
    resumed: bool = False
    failures: dict[str, str] = field(default_factory=dict)  # cell key -> error
    report_error: Optional[str] = None
    study: Optional[str] = None  # search sweeps: study name, storage, trial count
    fit_seconds: float = 0.0  # wall time of the trials phase (Ray Tune), startup and report excluded
