"""The sweep section as a plan, without Ray or MLflow: cells, keys, trimming,
the Optuna space and its decoding, validation of every cell, and how often a
cell's trial config is built."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from detector.config import ConfigError, TrialConfig
from sweeps import plan as plan_module
from sweeps.compose import compose_config
from sweeps.plan import Cell, build_plan, grid_cells, make_cell
from sweeps.run import plan_from
from sweeps.search import optuna_space
from sweeps.spec import apply_trimmed, command_line_keys, parse_sweep
from sweeps.trainable import run_cell

GRID = {"name": "g", "kind": "grid", "grid": {"loss.gamma": [0.0, 2.0], "loss.alpha": [0.25, 0.5]},
        "trimmed": {"smoke": {"loss.alpha": [0.25]}}, "cells": [{"loss.gamma": 5.0, "loss.alpha": 0.25}],
        "seeds": 1, "resume": True}
BASE = TrialConfig().to_dict()


def test_cell_key_is_sorted_and_stable():
    cell = make_cell(BASE, {"loss.gamma": 2.0, "loss.alpha": 0.25, "model.anchors.aspect_ratios": [0.5, 1.0]}, 3)
    assert cell.key == "loss.alpha=0.25,loss.gamma=2.0,model.anchors.aspect_ratios=[0.5,1.0],seed=3"
    assert make_cell(BASE, {"loss.name": "ce"}, 0).key == "loss.name=ce,seed=0"
    assert cell.config.loss.gamma == 2.0 and cell.config.train.seed == 3


def test_grid_is_the_product_plus_cells_times_seeds():
    spec = parse_sweep(GRID)
    assert len(grid_cells(spec, BASE)) == 4 + 1
    seeded = grid_cells(dataclasses.replace(spec, seeds=2), {**BASE, "train": {**BASE["train"], "seed": 10}})
    assert len(seeded) == 10 and {c.seed for c in seeded} == {10, 11}


def test_trimmed_replaces_grid_keys_of_its_profile_unless_given_on_the_command_line():
    spec = parse_sweep(GRID)
    assert apply_trimmed(spec, "smoke", frozenset()).grid == {"loss.gamma": [0.0, 2.0], "loss.alpha": [0.25]}
    assert apply_trimmed(spec, "smoke", frozenset({"grid"})).grid["loss.alpha"] == [0.25, 0.5]
    assert command_line_keys(["sweep.num_samples=2", "+sweep.cells=[]", "loss.alpha=1", "+sweep=x"]) == {
        "num_samples", "cells"}


def test_focus_gives_the_selected_cells_more_seeds():
    # gamma 0 (both alphas) and (gamma 2, alpha .25) get 3 seeds; (gamma 2, alpha .5) and gamma 5 one
    focus = {"seeds": 3, "cells": [{"loss.gamma": 0.0}, {"loss.gamma": 2.0, "loss.alpha": 0.25}]}
    spec = parse_sweep({**GRID, "focus": focus})
    cells = grid_cells(spec, BASE)
    seeds = {}
    for cell in cells:
        seeds.setdefault((cell.overrides["loss.gamma"], cell.overrides["loss.alpha"]), []).append(cell.seed)
    assert seeds == {(0.0, 0.25): [0, 1, 2], (0.0, 0.5): [0, 1, 2], (2.0, 0.25): [0, 1, 2], (2.0, 0.5): [0],
                     (5.0, 0.25): [0]}
    # sweep.seeds raises every cell; the focus stays at least its own count
    assert len(grid_cells(dataclasses.replace(spec, seeds=2), BASE)) == 3 * 3 + 2 * 2
    assert len(grid_cells(dataclasses.replace(spec, seeds=4), BASE)) == 5 * 4
    # a profile's `trimmed` may set the focus beside its grid keys
    trimmed = parse_sweep({**GRID, "trimmed": {"smoke": {"loss.alpha": [0.25], "focus": focus}}})
    assert apply_trimmed(trimmed, "smoke", frozenset()).focus == focus
    assert apply_trimmed(trimmed, "smoke", frozenset()).grid["loss.alpha"] == [0.25]
    with pytest.raises(ConfigError, match=r"^sweep.focus=.* must be \{seeds: N >= 1"):
        parse_sweep({**GRID, "focus": {"seeds": 0, "cells": [{"loss.gamma": 0.0}]}})


def test_duplicate_explicit_cell_runs_once():
    spec = parse_sweep({**GRID, "cells": [{"loss.gamma": 2.0, "loss.alpha": 0.5}]})
    assert len(grid_cells(spec, BASE)) == 4


def test_search_space_round_trip_with_list_choices():
    plan = plan_from(["+sweep=search", "profile=smoke"])
    space = optuna_space(plan.search)
    assert space["model.anchors.aspect_ratios"].choices == ("[1.0]", "[0.5, 1.0, 2.0]")
    cell = plan.search_cell({"loss.alpha": 0.3, "loss.gamma": 1.0, "model.anchors.scales_per_octave": 2,
                             "model.anchors.aspect_ratios": "[0.5, 1.0, 2.0]"})
    assert cell.overrides == {"loss.alpha": 0.3, "loss.gamma": 1.0, "model.anchors.scales_per_octave": 2,
                              "model.anchors.aspect_ratios": [0.5, 1.0, 2.0], "train.eval_every": 50}
    assert cell.config.model.anchors.aspect_ratios == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("bad, message", [
    ({"kind": "table"}, "sweep.kind='table' must be one of grid, search"),
    ({"seeds": 0}, "sweep.seeds=0 must be an integer >= 1"),
    ({"grid": {"loss.alpha": []}}, "sweep.grid.loss.alpha=[] must be a non-empty list"),
    ({"colour": 1}, "unknown key sweep.colour"),
])
def test_malformed_sweep_sections_are_one_line_errors(bad, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_sweep({**GRID, **bad})


def test_every_shipped_sweep_validates_on_every_profile():
    for sweep in ("alpha_ce", "gamma_alpha", "anchors", "ohem", "speed_accuracy", "fl_star", "search"):
        for profile in ("smoke", "cpu"):
            plan = plan_from([f"+sweep={sweep}", f"profile={profile}"])
            assert plan.name == sweep and plan.table
            if plan.kind == "grid":
                assert plan.cells


def test_the_default_job_runs_the_cpu_profile_with_its_trimmed_grid():
    plan = plan_from(["+sweep=gamma_alpha"])
    sweep = compose_config(["+sweep=gamma_alpha"]).sweep
    trimmed = sweep.trimmed.cpu
    extra = (trimmed.focus.seeds - 1) * len(trimmed.focus.cells)  # the headline's cells run more seeds
    assert plan.profile == "cpu" and len(plan.cells) == len(trimmed["loss.gamma"]) * len(trimmed["loss.alpha"]) + extra
    for key in ("loss.gamma", "loss.alpha"):
        assert {c.overrides[key] for c in plan.cells} == set(trimmed[key])
    focused = [{k: c.overrides[k] for k in ("loss.gamma", "loss.alpha")} for c in plan.cells if c.seed > 0]
    assert all(cell in trimmed.focus.cells for cell in focused)


def test_one_override_puts_the_papers_gamma_rows_back_into_the_default_job():
    sweep = compose_config(["+sweep=gamma_alpha"]).sweep
    every_gamma, trimmed_alphas = sweep.grid["loss.gamma"], sweep.trimmed.cpu["loss.alpha"]
    plan = plan_from(["+sweep=gamma_alpha", "sweep.trimmed.cpu={loss.gamma:[%s]}" % ",".join(map(str, every_gamma))])
    assert sorted({c.overrides["loss.gamma"] for c in plan.cells}) == sorted(every_gamma)
    assert {c.overrides["loss.alpha"] for c in plan.cells} == set(trimmed_alphas)  # the merge keeps the trimmed alphas
    focus = sweep.trimmed.cpu.focus  # merged too: the headline's cells keep their seeds
    assert len(plan.cells) == len(every_gamma) * len(trimmed_alphas) + (focus.seeds - 1) * len(focus.cells)


def test_the_parent_logs_only_what_no_cell_changes():
    plan = plan_from(["+sweep=gamma_alpha", "profile=smoke"])
    assert {"loss.gamma", "loss.alpha", "train.seed"} <= plan.swept_keys
    assert "loss.box" not in plan.swept_keys


def test_unknown_group_choices_name_the_alternatives():
    with pytest.raises(ConfigError, match=r"^unknown loss 'fl'; available: ce"):
        plan_from(["+sweep=gamma_alpha", "loss=fl"])
    with pytest.raises(ConfigError, match=r"^no sweep given: add \+sweep=<name>, one of alpha_ce"):
        plan_from(["loss.alpha=0.5"])


def test_a_sweep_in_the_users_own_folder(tmp_path: Path):
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "mine.yaml").write_text("name: mine\ngrid:\n  loss.gamma: [0.0, 1.0]\n")
    plan = plan_from(["+sweep=mine", "profile=smoke"], config_dir=str(tmp_path))
    assert plan.name == "mine" and [c.config.loss.gamma for c in plan.cells] == [0.0, 1.0]
    with pytest.raises(ConfigError, match="unknown sweep 'nope'; available: .*mine"):
        plan_from(["+sweep=nope"], config_dir=str(tmp_path))


def test_a_cells_trial_config_is_built_once_on_the_driver_and_once_at_most_in_the_trial(monkeypatch, tmp_path):
    """The driver builds each cell's TrialConfig once (plus the base); the trial
    uses the Cell it is handed and builds nothing."""
    calls: list[int] = []
    original = TrialConfig.from_dict.__func__

    def counting(cls, values):
        calls.append(1)
        return original(cls, values)

    monkeypatch.setattr(TrialConfig, "from_dict", classmethod(counting))
    plan = build_plan(compose_config(["+sweep=gamma_alpha", "profile=smoke"]))
    assert len(calls) == len(plan.cells) + 1  # each cell once, and the base
    calls.clear()
    seen = []
    plan = dataclasses.replace(plan, trial_function="tests.test_sweeps_plan:_record_config")
    for cell in plan.cells:
        run_cell(cell, plan, tmp_path / cell.key, seen.append)
    assert calls == [] and len(seen) == len(plan.cells)


def _record_config(config: TrialConfig, workdir: Path, report) -> dict:
    """A trial function that reports the config it was handed (no training)."""
    report({"iteration": 1, "gamma": config.loss.gamma})
    return {"iterations": config.train.iterations}


def test_the_plan_knows_the_command_line_that_made_it():
    """What the parent run records (sweep.command) and every report prints: quoted for a shell."""
    import shlex

    from sweeps.plan import sweep_command

    overrides = ["+sweep=gamma_alpha", "sweep.trimmed.cpu={loss.gamma:[0.0,0.1,2.0]}", "sweep.seeds=3"]
    command = sweep_command(overrides, config_dir="my conf")
    assert command == ("python -m sweeps.run --config-dir 'my conf' +sweep=gamma_alpha "
                       "'sweep.trimmed.cpu={loss.gamma:[0.0,0.1,2.0]}' sweep.seeds=3")
    assert shlex.split(command)[4:] == ["my conf", *overrides]  # the shell gives back the same words
    plan = build_plan(compose_config(["+sweep=gamma_alpha", "profile=smoke"]), ["+sweep=gamma_alpha", "profile=smoke"])
    assert plan.command == "python -m sweeps.run +sweep=gamma_alpha profile=smoke"
