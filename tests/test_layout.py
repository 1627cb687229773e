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
    parent = layout.parent_tags("gamma_alpha", "cpu", "grid", "h", table_block("gamma_alpha"))
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


def test_the_runs_link_lists_this_sweeps_trials_only_best_ap_first(analysis_store):
    """The UI applies the URL's searchFilter and orderByKey as MLflow's search does: the link's own
    filter, run against a store of several sweeps, gives this parent's children alone, best AP first."""
    from urllib.parse import parse_qs, urlsplit

    client = MlflowClient(analysis_store.uri)
    parent = analysis_store.parents["alpha_ce"]
    experiment_id = client.get_run(parent).info.experiment_id
    url = layout.runs_page("http://mlflow:5000/", experiment_id, parent)
    page, _, query = urlsplit(url).fragment.partition("?")
    assert url.startswith("http://mlflow:5000/#/") and page == f"/experiments/{experiment_id}/runs"
    facets = {key: values[0] for key, values in parse_qs(query).items()}
    assert facets == {"workflowType": "machine_learning", "searchFilter": f"tags.`mlflow.parentRunId` = '{parent}'",
                      "orderByKey": "metrics.`AP`", "orderByAsc": "false"}
    runs = client.search_runs([experiment_id], facets["searchFilter"], order_by=["metrics.`AP` DESC"])
    assert {run.data.tags[layout.PARENT_ID] for run in runs} == {parent}  # not the other sweeps' children
    assert len(runs) == len(layout.children(client, experiment_id, parent))
    finished = [run.data.metrics["AP"] for run in runs if "AP" in run.data.metrics]
    assert finished == sorted(finished, reverse=True) and len(finished) >= 2


def test_a_sweeps_saved_view_carries_its_columns_and_the_link_opens_it():
    """The MLflow UI (3.17) reads a saved view from the experiment tag `mlflow.sharedViewState.<key>`:
    an envelope {name: str, createdAt: number, state: str} whose state holds the facets and columns;
    a link with any facet beside the key makes the UI ignore the view, so the link has the key alone."""
    import json
    from urllib.parse import parse_qs, urlsplit

    parent = "f" * 32
    key, value = layout.runs_view("gamma_alpha (cpu)", parent, ["loss.alpha", "loss.gamma"], now_ms=1_700_000_000_000)
    assert key == f"mlflow.sharedViewState.sweep-{parent}"
    envelope = json.loads(value)
    assert isinstance(envelope["name"], str) and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    assert state["searchFilter"] == layout.children_filter(parent) and state["orderByKey"] == "metrics.`AP`"
    assert state["orderByAsc"] is False
    assert state["selectedColumns"] == ["metrics.`AP`", "metrics.`AP50`", "metrics.`AP75`", "metrics.`ms_per_image`",
                                        "params.`loss.alpha`", "params.`loss.gamma`"]
    url = layout.runs_page("http://127.0.0.1:5000", "3", parent, saved_view=True)
    facets = parse_qs(urlsplit(url).fragment.partition("?")[2])
    assert facets == {"viewStateShareKey": [f"sweep-{parent}"], "workflowType": ["machine_learning"]}
