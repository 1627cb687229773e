"""What produced a run: package versions, device, git state and a digest of the data.

Every run (the sweep's parent and each trial's child) carries these as tags
(`analysis/layout.py` ENV_TAGS), so two runs that disagree can be told apart
by what they ran on. Versions come from the installed distributions'
metadata (`importlib.metadata`), so collecting them imports none of the heavy
packages.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Optional

from analysis import layout
from detector.config import DataConfig

UNKNOWN = "unknown"
# tag -> distribution whose version it records
PACKAGES = {layout.ENV_TORCH: "torch", layout.ENV_TORCHVISION: "torchvision", layout.ENV_RAY: "ray",
            layout.ENV_MLFLOW: "mlflow", layout.ENV_OPTUNA: "optuna"}
_DIGESTS: dict[tuple, str] = {}  # (path, size, mtime) of the annotation files -> digest


def package_versions() -> dict[str, str]:
    """env.python and the version of each package in PACKAGES ("unknown" if not installed)."""
    tags = {layout.ENV_PYTHON: platform.python_version()}
    for tag, distribution in PACKAGES.items():
        try:
            tags[tag] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            tags[tag] = UNKNOWN
    return tags


def git_state(root: Path) -> dict[str, str]:
    """git.commit and git.dirty (uncommitted changes to tracked files) of the checkout at `root`."""
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    dirty = UNKNOWN if status is None else str(bool(status)).lower()
    return {layout.ENV_GIT_COMMIT: commit or UNKNOWN, layout.ENV_GIT_DIRTY: dirty}


def _git(root: Path, *args: str) -> Optional[str]:
    """A git command's output, or None outside a checkout or without git (a tag, not a reason to stop)."""
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cluster_device(gpus: float) -> str:
    """The driver's view of the device: "cpu" without GPUs, else the CUDA device's name.
    torch is imported only when there is a GPU to name."""
    if gpus <= 0:
        return "cpu"
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{gpus:g} GPU(s) (not on this node)"


def data_digest(data: DataConfig) -> str:
    """sha256 (16 hex digits) of the train and val annotation files; "unknown" where they are
    not on this machine (a synthetic set not written yet, a data.root only the workers see)."""
    files = annotation_files(data)
    if not files or not all(path.is_file() for path in files):
        return UNKNOWN
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if stamp not in _DIGESTS:  # COCO's train annotations are ~450 MB: hash them once per process
        digest = hashlib.sha256()
        for path in files:
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        _DIGESTS[stamp] = digest.hexdigest()[:16]
    return _DIGESTS[stamp]


def annotation_files(data: DataConfig) -> list[Path]:
    """The annotation files of the train and val splits ([] when the synthetic set is not written yet:
    finding its paths must not generate it)."""
    from detector.data.loader import split_paths
    from detector.data.synthetic import dataset_key

    if data.kind == "synthetic":
        cache = Path(data.cache_dir).expanduser()
        if not (cache / f"synthetic-{dataset_key(data)}").is_dir():
            return []
    elif not data.root or not Path(data.root).expanduser().is_dir():
        return []
    root, train, val = split_paths(data)
    return [root / "annotations" / f"instances_{split}.json" for split in dict.fromkeys((train, val))]


def run_tags(root: Path, data: DataConfig, device: Optional[str] = None) -> dict[str, str]:
    """Every environment tag of a run; env.device only when known."""
    tags = {**package_versions(), **git_state(root), layout.DATA_DIGEST: data_digest(data)}
    if device:
        tags[layout.ENV_DEVICE] = device
    return tags

