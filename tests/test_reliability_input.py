"""Bad input found before anything starts (issue 24, item 6; names that become
paths, item 5): each case is `python -m sweeps.run` as a user runs it, and
must end in one line, exit 2, no traceback, and nothing written in the folder.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


def sweep_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m sweeps.run ARGS` in `cwd`, to its end."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "sweeps.run", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=180)


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def user_sweep(folder: Path, name: str, text: str) -> Path:
    """A user's --config-dir holding sweep/<name>.yaml with `text`."""
    (folder / "sweep").mkdir(parents=True, exist_ok=True)
    (folder / "sweep" / f"{name}.yaml").write_text(text)
    return folder


def fill(text: str, values: dict[str, str]) -> str:
    """`text` with each placeholder of `values` ("{port}") replaced (str.format would trip on YAML braces)."""
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


CASES = {
    "yaml syntax": (["--config-dir", "{mine}", "+sweep=broken"],
                    "YAML syntax error in {mine}/sweep/broken.yaml, line 3, column 1: expected ',' or ']'"),
    "space entry not a mapping": (["+sweep=search", "sweep.space={loss.alpha: 0.5}"],
                                  "sweep.space.loss.alpha=0.5 must be a mapping such as {type: float"),
    "space bound not a number": (["--config-dir", "{mine}", "+sweep=bad_space"],
                                 "sweep.space.loss.alpha.low='abc' must be a number"),
    "asha not a mapping": (["+sweep=search", "sweep.asha=3"],
                           "sweep.asha: Cannot assign int to Dict[str, Any]"),
    # the cpu profile's synthetic pretraining needs synthetic data: from scratch here, to reach the root
    "data.root missing": (["+sweep=gamma_alpha", "data=coco", "data.root=/no/such/coco", "model.pretrained=null",
                           "model.frozen_bn=false"],
                          "data.root=/no/such/coco does not exist here"),
    "relative pretrained": (["+sweep=gamma_alpha", "model.pretrained=weights/r50.pth"],
                            "model.pretrained=weights/r50.pth is a relative path, which each trial would read from "
                            "its own folder: give an absolute path, or imagenet / synthetic"),
    "pretrained file missing": (["+sweep=gamma_alpha", "model.pretrained=/no/such/r50.pth"],
                                "model.pretrained=/no/such/r50.pth does not exist here"),
    "unreachable tracking server": (["+sweep=gamma_alpha", "tracking.uri=http://127.0.0.1:{port}"],
                                    "tracking.uri=http://127.0.0.1:{port}: cannot connect to 127.0.0.1:{port}"),
    "unreachable study database": (["+sweep=search", "sweep.storage=postgresql://u:secret@127.0.0.1:{port}/optuna"],
                                   "sweep.storage=postgresql://u:***@127.0.0.1:{port}/optuna: cannot connect to "
                                   "127.0.0.1:{port}"),
    "experiment as a path": (["+sweep=gamma_alpha", "tracking.experiment=../elsewhere"],
                             "tracking.experiment='../elsewhere' must be a plain name"),
    "sweep name as a path": (["+sweep=gamma_alpha", "sweep.name=reports/../../x"],
                             "sweep.name='reports/../../x' must be a plain name"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, case):
    mine = user_sweep(tmp_path / "mine", "broken", "name: broken\ngrid: {loss.gamma: [0.0, 2.0\n")
    user_sweep(mine, "bad_space", "name: bad_space\nkind: search\nspace:\n  loss.alpha: {type: float, low: abc, high: 0.9}\n")
    values = {"{mine}": str(mine), "{port}": str(closed_port())}
    args, message = CASES[case]
    result = sweep_cli(tmp_path, *(fill(arg, values) for arg in args))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and fill(message, values) in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no store, no outputs/, no leases


def test_a_missing_data_root_on_an_existing_cluster_is_left_to_its_workers(tmp_path):
    """The driver of a cluster (cluster.address) need not hold the data: it is not checked there."""
    from sweeps.run import plan_from

    plan = plan_from(["+sweep=gamma_alpha", "profile=smoke", "data=coco", "data.root=/no/such/coco",
                      "cluster.address=auto"])
    assert plan.base_config.data.root == "/no/such/coco"
