"""The sweep section as trials, without Ray or MLflow: cells, keys, trimming,
the Optuna space and its decoding, validation of every cell."""

from __future__ import annotations

import pytest

from detector.config import ConfigError
from sweeps.run import check_group_choices, compose_checked
from sweeps.space import Cell, command_line_keys, grid_cells, optuna_space, search_cell, sweep_spec
from sweeps.validate import prepare

GRID = {"name": "g", "kind": "grid", "grid": {"loss.gamma": [0.0, 2.0], "loss.alpha": [0.25, 0.5]},
        "trimmed": {"smoke": {"loss.alpha": [0.25]}}, "cells": [{"loss.gamma": 5.0, "loss.alpha": 0.25}],
        "seeds": 1, "resume": True, "paper_table": "t"}


def test_cell_key_is_sorted_and_stable():
    cell = Cell({"loss.gamma": 2.0, "loss.alpha": 0.25, "model.anchors.aspect_ratios": [0.5, 1.0]}, 3)
    assert cell.key == "loss.alpha=0.25,loss.gamma=2.0,model.anchors.aspect_ratios=[0.5,1.0],seed=3"
    assert Cell({"loss.name": "ce"}, 0).key == "loss.name=ce,seed=0"


def test_grid_is_the_product_plus_cells_times_seeds():
    spec = sweep_spec(GRID, "cpu")
    cells = grid_cells(spec, base_seed=0)
    assert len(cells) == 4 + 1
    spec.seeds = 2
    seeded = grid_cells(spec, base_seed=10)
    assert len(seeded) == 10 and {c.seed for c in seeded} == {10, 11}


def test_trimmed_replaces_grid_keys_of_its_profile_unless_given_on_the_command_line():
    assert sweep_spec(GRID, "smoke").grid == {"loss.gamma": [0.0, 2.0], "loss.alpha": [0.25]}
    assert sweep_spec(GRID, "smoke", frozenset({"grid"})).grid["loss.alpha"] == [0.25, 0.5]
    assert command_line_keys(["sweep.num_samples=2", "+sweep.cells=[]", "loss.alpha=1", "+sweep=x"]) == {
        "num_samples", "cells"}


def test_duplicate_explicit_cell_runs_once():
    spec = sweep_spec({**GRID, "cells": [{"loss.gamma": 2.0, "loss.alpha": 0.5}]}, "cpu")
    assert len(grid_cells(spec, 0)) == 4


def test_search_space_round_trip_with_list_choices():
    spec = sweep_spec({"name": "search", "kind": "search", "eval_every": 50, "storage": "j.log",
                       "asha": {"grace_period": 2, "reduction_factor": 2},
                       "space": {"loss.alpha": {"type": "float", "low": 0.1, "high": 0.9},
                                 "model.anchors.aspect_ratios": {"type": "categorical",
                                                                 "choices": [[1.0], [0.5, 1.0, 2.0]]}}}, "cpu")
    space = optuna_space(spec)
    assert space["model.anchors.aspect_ratios"].choices == ("[1.0]", "[0.5, 1.0, 2.0]")
    cell = search_cell(spec, {"loss.alpha": 0.3, "model.anchors.aspect_ratios": "[0.5, 1.0, 2.0]"}, 0)
    assert cell.overrides == {"loss.alpha": 0.3, "model.anchors.aspect_ratios": [0.5, 1.0, 2.0],
                              "train.eval_every": 50}


@pytest.mark.parametrize("bad, message", [
    ({"kind": "table"}, "sweep.kind='table' must be one of grid, search"),
    ({"seeds": 0}, "sweep.seeds=0 must be an integer >= 1"),
    ({"grid": {"loss.alpha": []}}, "sweep.grid.loss.alpha=[] must be a non-empty list"),
    ({"colour": 1}, "unknown key sweep.colour"),
])
def test_malformed_sweep_sections_are_one_line_errors(bad, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sweep_spec({**GRID, **bad}, "cpu")


def test_every_shipped_sweep_validates_on_every_profile():
    for sweep in ("alpha_ce", "gamma_alpha", "anchors", "ohem", "speed_accuracy", "fl_star", "search"):
        for profile in ("smoke", "cpu"):
            prepared = prepare(compose_checked([f"+sweep={sweep}", f"profile={profile}"]))
            assert prepared.spec.name == sweep
            if prepared.spec.kind == "grid":
                assert prepared.cells


def test_the_default_job_runs_the_cpu_profile_with_its_trimmed_grid():
    prepared = prepare(compose_checked(["+sweep=gamma_alpha"]))
    sweep = prepared.cfg.sweep
    expected = len(sweep.grid["loss.gamma"]) * len(sweep.trimmed.cpu["loss.alpha"])
    assert prepared.profile == "cpu" and len(prepared.cells) == expected
    assert {c.overrides["loss.alpha"] for c in prepared.cells} == set(sweep.trimmed.cpu["loss.alpha"])


def test_unknown_group_choices_name_the_alternatives():
    assert check_group_choices(["+sweep=gamma_alpha", "loss=fl"]).startswith("unknown loss 'fl'; available: ce")
    assert check_group_choices(["+sweep=gamma_alpha", "loss.alpha=0.5"]) is None
