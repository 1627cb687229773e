"""sweeps.loss_cdf (Figure 4): the normalised-loss CDF and the CLI on a logged smoke model."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from detector.data.loader import build_datasets
from detector.model import build_model
from detector.regime import normalized_loss_cdf
from sweeps.loss_cdf import main, parse_args
from tests.analysis_fixtures import FakeTrial, analysis_store, fake_metrics, log_fake_sweep  # noqa: F401
from tests.conftest import compose_trial

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_equal_losses_give_the_diagonal():
    x, y = normalized_loss_cdf(torch.full((10,), 0.3), gamma=2.0, points=10)
    assert x == pytest.approx([i / 10 for i in range(1, 11)]) and y == pytest.approx(x)


def test_focusing_moves_the_negative_loss_to_the_hard_tail():
    # mostly easy negatives (x_t = 4, p_t ~ .98) and a few hard ones (x_t = -1)
    x_t = torch.cat([torch.full((990,), 4.0), torch.full((10,), -1.0)])
    share = {g: normalized_loss_cdf(x_t, g, points=1000)[1][989] for g in (0.0, 2.0)}
    assert share[2.0] < 0.01 < share[0.0]  # loss of the 99% easy ones: tiny under gamma = 2
    for gamma in (0.0, 0.5, 1.0, 2.0):
        fraction, cumulative = normalized_loss_cdf(x_t, gamma)
        assert fraction[-1] == cumulative[-1] == pytest.approx(1.0)
        assert all(a <= b + 1e-12 for a, b in zip(cumulative, cumulative[1:]))


def test_arguments_are_argparse_with_config_overrides(capsys):
    args = parse_args(["abc", "--images", "3", "data.root=/data/coco"])
    assert args.run_id == "abc" and args.images == 3 and args.overrides == ["data.root=/data/coco"]
    for argv, error in ((["--images", "3"], "the following arguments are required: run_id"),
                        (["abc", "--colour", "red"], "unrecognized arguments: --colour red"),
                        (["abc", "colour"], "'colour' is not key=value")):
        with pytest.raises(SystemExit):
            parse_args(argv)
        assert error in capsys.readouterr().err


@pytest.fixture(scope="module")
def logged_smoke_trial(analysis_store, smoke_cache, tmp_path_factory):
    """A child run with config.yaml and checkpoint/model.pt of an (untrained) smoke model."""
    folder = tmp_path_factory.mktemp("smoke-trial")
    cfg = compose_trial(["profile=smoke", f"data.cache_dir={smoke_cache}"])
    _, val_set = build_datasets(cfg.data, train=False)
    model = build_model(cfg.model, cfg.loss, val_set.num_classes)
    torch.save(model.state_dict(), folder / "model.pt")
    (folder / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(cfg.to_dict()))))
    uri = analysis_store.uri
    parent = log_fake_sweep(uri, "figure4_smoke", [FakeTrial({"loss.gamma": 2.0}, 0, fake_metrics(0.3))])
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_run(parent).info.experiment_id],
                                f"tags.`mlflow.parentRunId` = '{parent}'")
    client.log_artifact(run.info.run_id, str(folder / "config.yaml"))
    client.log_artifact(run.info.run_id, str(folder / "model.pt"), "checkpoint")
    return uri, run.info.run_id, parent


def test_cli_writes_figure4_and_logs_it(logged_smoke_trial, tmp_path, capsys):
    uri, run_id, _ = logged_smoke_trial
    code = main([run_id, "--tracking-uri", uri, "--out", str(tmp_path / "out"), "--images", "4",
                 "--max-negatives", "5000", "--points", "200"])
    assert code == 0, capsys.readouterr().err
    png = tmp_path / "out" / f"figure4_{run_id[:8]}.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE and png.with_suffix(".svg").exists()
    logged = {a.path for a in MlflowClient(uri).list_artifacts(run_id, "reports")}
    assert logged == {f"reports/figure4_{run_id[:8]}.{ext}" for ext in ("png", "svg", "json")}
    figures = json.loads(png.with_suffix(".json").read_text())
    assert figures["share"] == 0.8 and list(figures["hardest_fraction"]) == ["0", "0.5", "1", "2"]
    for fractions in figures["hardest_fraction"].values():  # shares of samples: in (0, 1]
        assert 0 < fractions["negatives"] <= 1 and 0 < fractions["positives"] <= 1
    # focusing moves the negatives' loss onto fewer samples: the fraction never grows with gamma
    negatives = [f["negatives"] for f in figures["hardest_fraction"].values()]
    assert negatives == sorted(negatives, reverse=True)
    out = capsys.readouterr().out
    assert out.count("of the negatives and") == 4 and "gamma 2: " in out


def test_cli_errors_are_one_line(logged_smoke_trial, capsys):
    uri, _, parent = logged_smoke_trial
    assert main(["0" * 32, "--tracking-uri", uri]) == 2
    assert capsys.readouterr().err == f"error: no run with id {'0' * 32}\n"
    assert main([parent, "--tracking-uri", uri]) == 2
    error = capsys.readouterr().err
    assert error == f"error: run {parent} is not a trial (child) run of a sweep: pass a child run id\n"
