"""analysis/declaration.py: every sweep file's table parses; bad declarations are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from analysis.parse import DeclarationError, parse_table

SWEEPS = sorted((Path(__file__).resolve().parents[1] / "conf" / "sweep").glob("*.yaml"))
GAMMA = {"paper": "table1b_gamma_alpha", "rows": {"gamma": "loss.gamma", "alpha": "loss.alpha"}}


def _block(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["table"]


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_every_sweep_file_declares_a_table_that_survives_the_parent_tag(path):
    raw = _block(path)
    assert "paper_table" not in yaml.safe_load(path.read_text(encoding="utf-8"))
    declaration = parse_table(raw)
    # the parent run logs it as JSON with sorted keys (layout.parent_tags): same table back
    assert parse_table(json.loads(json.dumps(raw, sort_keys=True))) == declaration
    assert parse_table(OmegaConf.create(raw)) == declaration  # what sweeps/ passes


def test_no_declaration_is_a_trials_table():
    for raw in (None, {}):
        declaration = parse_table(raw)
        assert declaration.trials and declaration.name == "trials" and "ms_per_image" in declaration.metrics


def test_rows_follow_the_papers_column_order_and_only_if_blanks():
    declaration = parse_table(_block(next(p for p in SWEEPS if p.stem == "ohem")))
    assert declaration.columns == ("method", "batch_size", "nms_threshold")
    config = {"loss.name": "focal", "loss.ohem.batch_per_image": 128, "loss.ohem.nms_thresh": 0.5}
    assert declaration.row_values(config.get) == ("FL", None, None)
    config["loss.name"] = "ohem"
    assert declaration.row_values(config.get) == ("OHEM", 128, 0.5)


def test_a_list_of_rows_keeps_its_order_without_a_paper():
    declaration = parse_table({"rows": [{"z": "loss.gamma"}, {"a": {"count": "model.anchors.aspect_ratios"}}]})
    assert declaration.columns == ("z", "a") and declaration.paper is None
    assert declaration.row_values({"loss.gamma": 2.0, "model.anchors.aspect_ratios": [1, 2]}.get) == (2.0, 2)


@pytest.mark.parametrize("raw, message", [
    ({"rows": {"gamma": {"lenn": "loss.gamma"}}},
     "sweep.table.rows.gamma: unknown derivation 'lenn'; allowed: count, method, path"),
    ({"rowz": {}}, "sweep.table: unknown key 'rowz'; allowed: best_of, findings, grid, headers, metrics, name, "
                   "order, paper, paper_metrics, plot, rows, title"),
    ({"paper": "table9"}, "sweep.table.paper: unknown reference table 'table9'; allowed: "),
    ({**GAMMA, "rows": {"gama": "loss.gamma"}}, "sweep.table.rows.gama: not a column of table1b_gamma_alpha"),
    ({**GAMMA, "metrics": ["APX"]}, "sweep.table.metrics: unknown metric 'APX'; allowed: AP, AP50"),
    ({**GAMMA, "metrics": ["ms_per_image"]},
     "sweep.table.paper_metrics (default: the metrics): 'ms_per_image' is not a column of table1b_gamma_alpha"),
    ({**GAMMA, "best_of": "beta"}, "sweep.table.best_of: 'beta' must be one of two or more rows; rows: gamma, alpha"),
    ({**GAMMA, "grid": True}, "sweep.table.grid: needs best_of"),
    ({**GAMMA, "order": ["-delta"]}, "sweep.table.order[0]: 'delta' is not a row; allowed: gamma, alpha"),
    ({**GAMMA, "plot": {"kind": "pie"}}, "sweep.table.plot.kind: unknown plot kind 'pie'; allowed: bars, curve, figure2"),
    ({**GAMMA, "plot": {"kind": "curve"}}, "sweep.table.plot.x: required by plot kind curve"),
    ({**GAMMA, "best_of": "alpha", "plot": {"kind": "curve", "x": "alpha"}},
     "sweep.table.plot.x: 'alpha' is not a row; allowed: gamma"),
    ({**GAMMA, "best_of": "alpha", "plot": {"kind": "curve", "x": "gamma", "baseline": {"alpha": 0.25}}},
     "sweep.table.plot.baseline.alpha: not a row; allowed: gamma"),
    ({**GAMMA, "plot": {"kind": "curve", "x": "gamma", "baseline": 0}},
     "sweep.table.plot.baseline: must be a cell, {row column: value}, e.g. {gamma: 0}"),
    ({**GAMMA, "findings": ["nope"]}, "sweep.table.findings: unknown finding 'nope'; allowed: "),
    ({**GAMMA, "findings": ["fl_beats_best_ohem"]},
     "sweep.table.findings: fl_beats_best_ohem: tests table1d_ohem, not this table's paper table1b_gamma_alpha"),
    ({"paper": "table1b_gamma_alpha", "rows": {"gamma": "loss.gamma"}, "findings": ["best_alpha_falls_with_gamma"]},
     "sweep.table.findings: best_alpha_falls_with_gamma: names 'alpha', not a column of this table's cells"),
    ({"rows": {"a": {"path": "loss.gamma", "only_if": {"b": [1]}}}},
     "sweep.table.rows.a.only_if: 'b' is not another row"),
    ({"findings": ["gamma5_below_gamma2"]}, "sweep.table.findings: needs rows"),
    ({"paper": "table1a_alpha_ce"}, "sweep.table.rows: required with paper table1a_alpha_ce"),
    ({"name": "a/b"}, "sweep.table.name: 'a/b' must be a file stem"),
    ("table1b", "sweep.table: must be a mapping"),
])
def test_bad_declarations_are_one_line_errors(raw, message):
    with pytest.raises(DeclarationError) as error:
        parse_table(raw)
    text = str(error.value)
    assert text.startswith(message) and "\n" not in text
    assert isinstance(error.value, ValueError)
