"""The wheel is a working installation: built from the sources, installed into a
folder of its own, it runs a sweep from any directory with the Hydra configs it
ships (`sweeps/conf/`), and a user's own sweep through `--config-dir`.

The installed copy must be what runs, not this checkout: the commands run in
another folder with the install first on PYTHONPATH (the venv's editable
finder comes after path entries), and the test checks where `sweeps` and
`detector` were imported from. The dependencies are the venv's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "detector", "sweeps", "analysis", "conf")
ONE_CELL = "sweep.trimmed.smoke={loss.gamma:[2.0],loss.alpha:[0.25]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """site/: the wheel built from a copy of the sources (the checkout gets no build/ or egg-info)."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        if (PROJECT / name).is_dir():
            shutil.copytree(PROJECT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(PROJECT / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
          str(root / "dist"), str(source)], cwd=root)
    (wheel,) = (root / "dist").glob("retinanet_sweeps-*.whl")
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(root / "site"),
          str(wheel)], cwd=root)
    return root / "site"


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _env(site: Path) -> dict[str, str]:
    """The install first on the path; nothing of this checkout (Ray's workers inherit it)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    return env


def _sweep_args(tmp: Path, smoke_cache: str) -> list[str]:
    return ["profile=smoke", f"data.cache_dir={smoke_cache}", f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
            f"output_dir={tmp / 'outputs'}", f"reports_dir={tmp / 'reports'}", "cluster.num_cpus=1",
            ONE_CELL, "train.iterations=10", "train.log_every=5"]


def test_the_installed_copy_is_the_one_imported(installed, tmp_path):
    code = "import sweeps.compose, detector, analysis; print(sweeps.__file__, detector.__file__, " \
           "analysis.__file__, sweeps.compose.conf_dir(), sep='\\n')"
    out = _run([sys.executable, "-c", code], cwd=tmp_path, env=_env(installed)).stdout.split()
    assert all(Path(p).is_relative_to(installed) for p in out), out
    assert Path(out[3]) == installed / "sweeps" / "conf" and (installed / "sweeps" / "conf" / "sweep").is_dir()


def test_an_installed_sweep_runs_from_any_folder(installed, tmp_path, smoke_cache):
    result = _run([sys.executable, "-m", "sweeps.run", "+sweep=gamma_alpha", *_sweep_args(tmp_path, smoke_cache)],
                  cwd=tmp_path, env=_env(installed))
    assert "gamma_alpha (smoke): 1 finished, 0 failed" in result.stdout, result.stdout[-2000:]
    assert (tmp_path / "reports" / "gamma_alpha" / "index.html").is_file()


def test_a_users_sweep_through_config_dir(installed, tmp_path, smoke_cache):
    text = (installed / "sweeps" / "conf" / "sweep" / "gamma_alpha.yaml").read_text()
    (tmp_path / "my_conf" / "sweep").mkdir(parents=True)
    (tmp_path / "my_conf" / "sweep" / "my_focal.yaml").write_text(text.replace("name: gamma_alpha", "name: my_focal"))
    result = _run([sys.executable, "-m", "sweeps.run", "--config-dir", str(tmp_path / "my_conf"), "+sweep=my_focal",
                   *_sweep_args(tmp_path, smoke_cache)], cwd=tmp_path, env=_env(installed))
    assert "my_focal (smoke): 1 finished, 0 failed" in result.stdout, result.stdout[-2000:]
    assert "Table 1b" in (tmp_path / "reports" / "my_focal" / "table1b.md").read_text()
