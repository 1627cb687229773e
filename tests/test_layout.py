"""analysis/layout.py: the run layout that sweeps/, analysis/ and the test fixtures share."""

from __future__ import annotations

from types import SimpleNamespace

from mlflow.tracking import MlflowClient
from tests.analysis_fixtures import analysis_store, table_block  # noqa: F401  (analysis_store is a fixture)

from analysis import layout


def _run(run_id, status, start, tags):
    """An mlflow Run lookalike."""
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id, status=status, start_time=start),
                           data=SimpleNamespace(tags=tags))


def test_cell_key_sorts_overrides_and_keeps_strings_bare():
    key = layout.cell_key({"loss.name": "ohem", "loss.alpha": 0.25, "model.anchors.aspect_ratios": [1.0]}, 3)
    assert key == "loss.alpha=0.25,loss.name=ohem,model.anchors.aspect_ratios=[1.0],seed=3"


def test_child_and_parent_tags_round_trip():
    tags = layout.child_tags("p" * 32, "gamma_alpha", {"loss.gamma": 2.0}, 1)
    assert tags[layout.PARENT_ID] == "p" * 32 and tags[layout.SEED] == "1"
    assert layout.decode_overrides(tags[layout.OVERRIDES]) == {"loss.gamma": 2.0}
    parent = layout.parent_tags("gamma_alpha", "cpu", "grid", "h", "c", table_block("gamma_alpha"))
    assert layout.table_of(_run("x", layout.FINISHED, 0, parent)) == table_block("gamma_alpha")
    assert layout.table_of(_run("x", layout.FINISHED, 0, {})) == {}


def test_latest_per_cell_keeps_the_finished_run():
    cell = {layout.CELL: "loss.alpha=0.25,seed=0"}
    runs = [_run("a", layout.FAILED, 1, cell), _run("b", layout.FINISHED, 2, cell), _run("c", layout.FAILED, 3, cell)]
    assert [r.info.run_id for r in layout.latest_per_cell(runs).values()] == ["b"]


def test_the_fixture_store_is_written_in_the_layout(analysis_store):
    client = MlflowClient(analysis_store.uri)
    parent = client.get_run(analysis_store.parents["anchors"])
    assert layout.table_of(parent) == table_block("anchors")
    experiment = parent.info.experiment_id
    children = layout.children(client, experiment, parent.info.run_id)
    for child in children:
        overrides = layout.decode_overrides(child.data.tags[layout.OVERRIDES])
        seed = int(child.data.tags[layout.SEED])
        assert child.data.tags[layout.CELL] == layout.cell_key(overrides, seed)  # no drift from the writer
    assert layout.latest_parent(client, experiment, "anchors").info.run_id == parent.info.run_id
