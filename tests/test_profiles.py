"""Profiles and data files hold only what differs from the schema (one source of truth per default)."""
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from omegaconf import OmegaConf

from sweeps.schema import RootConfig

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUP_FILES = sorted(CONF.glob("profile/*.yaml")) + sorted(CONF.glob("data/*.yaml"))


def leaves(tree: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every non-mapping value of a nested mapping."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def restated(path: Path) -> list[str]:
    """Keys of a group file whose value is the schema's own default."""
    schema = OmegaConf.to_container(OmegaConf.structured(RootConfig), resolve=False)
    tree = yaml.safe_load(path.read_text())
    if path.parent.name == "data":  # a data file is placed under `data:` (its package)
        tree = {"data": tree}
    same = []
    for key, value in leaves(tree):
        node: Any = schema
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node == value:
            same.append(f"{key} = {value!r}")
    return same


def test_restated_finds_a_schema_default(tmp_path: Path) -> None:
    profile = tmp_path / "profile" / "p.yaml"
    profile.parent.mkdir()
    profile.write_text("model: {depth: 50, fpn_channels: 64}\ntrain: {lr: 0.01}\n")
    assert restated(profile) == ["model.depth = 50", "train.lr = 0.01"]


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_group_file_holds_only_differences(path: Path) -> None:
    assert restated(path) == []
