"""What the driver hands to every trial: a small picklable description of the
sweep, shared by the Ray trainable (in the workers) and the MLflow callback
(in the driver), so both derive the same cell from a Tune trial's config.
"""

from __future__ import annotations

import hashlib
import importlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from sweeps.space import Cell, SweepSpec, search_cell

DEFAULT_TRIAL_FUNCTION = "detector.trial:run_trial"


@dataclass
class SweepPlan:
    """The base trial config, the sweep and where trials work."""

    base: dict[str, Any]  # nested trial config (model, loss, data, train, eval)
    spec: SweepSpec
    name: str  # <sweep>-<parent run id[:8]>: names this sweep's folders
    invocation: str  # unique per run of the command: tags the child runs it touches
    work_root: Optional[str] = None  # absolute, on this machine; None: a temp folder on each worker
    cells: dict[str, Cell] = field(default_factory=dict)  # grid cells by key
    cpus_per_trial: float = 1.0
    trial_function: str = DEFAULT_TRIAL_FUNCTION  # "module:function"

    @property
    def base_seed(self) -> int:
        return int(self.base["train"]["seed"])

    def cell_for(self, config: dict[str, Any]) -> Cell:
        """The cell of a Tune trial config ({"cell": key} for a grid, the sampled values for a search)."""
        if self.spec.kind == "grid":
            return self.cells[config["cell"]]
        return search_cell(self.spec, config, self.base_seed)

    def workdir(self, cell: Cell, trial_id: str) -> Path:
        """Folder of one trial, on the node that runs it. Grid cells keep theirs
        across resumes, so a trial with train.checkpoint_every continues from
        its checkpoint (on another machine, only if it lands on the same node)."""
        name = cell.key if self.spec.kind == "grid" else f"{trial_id}-{cell.key}"
        digest = hashlib.sha1(name.encode()).hexdigest()[:12]
        root = Path(self.work_root) if self.work_root else Path(tempfile.gettempdir()) / "retinanet-sweeps" / self.name
        return root / digest

    def trial_function_object(self) -> Callable[..., dict]:
        """Import `module:function` (the real detector unless a test or benchmark swaps it)."""
        module_name, _, attribute = self.trial_function.partition(":")
        return getattr(importlib.import_module(module_name), attribute)
