"""Figure 4 of the paper: CDFs of the normalised focal loss over a trained model's anchors.

    python -m sweeps.loss_cdf RUN_ID [--tracking-uri URI] [--out DIR] [--images 200]
        [--gammas 0,0.5,1,2] [--max-negatives 10000000] [--device auto] [--no-log]
        [data.root=/data/coco] [data.<key>=<value> ...]

Prints, per gamma, the fraction of the hardest negatives and positives that
carries 80% of the normalised loss, and writes them to figure4_<run>.json
beside the plot.

Paper, section 5.1: "we take a converged model ... and apply it to a large
number of random images. We sample the predicted probability for ~10^7
negative windows and ~10^5 positive windows. Next, separately for positives
and negatives, we compute FL for these samples, and normalize the loss such
that it sums to one. Given the normalized loss, we can sort the loss from
lowest to highest and plot its cumulative distribution function (CDF)."
With gamma = 2 nearly all the negatives' loss comes from a small fraction of
hard negatives, while the positives' CDF barely changes with gamma.

The child run's config.yaml and checkpoint/model.pt artifacts rebuild the
model; the images are its validation split. The sampling and the curves are
`detector.regime`'s (as for `python -m sweeps.regime`); this file reads the
run, draws the plot and writes the files.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from analysis import layout
from analysis.errors import AnalysisError
from analysis.runs import get_run, open_client, store_errors
from detector.config import ConfigError, TrialConfig
from detector.data.coco import DatasetError
from detector.regime import (FIGURE4_GAMMAS, FIGURE4_SHARE, LogitSamples, figure4_fractions, normalized_loss_cdf,
                             sample_logits, trained_model)
from detector.train import resolve_device

# kind ("positive"/"negative") -> gamma -> (fraction of samples, cumulative normalised loss)
Curves = dict[str, dict[float, tuple[list[float], list[float]]]]


@dataclass
class Figure4:
    """Figure 4 of one trained model: the plot's files, and the figure read off it.

    fractions: gamma -> {"negatives": f, "positives": f}, f the fraction of the
    samples, hardest first, that carries 80% of the normalised FL_gamma
    (`detector.regime.figure4_fractions`); json: where they are written.
    """

    paths: list[Path]  # PNG, SVG
    fractions: dict[float, dict[str, float]]
    json: Path

    def lines(self) -> list[str]:
        """One line per gamma, for the terminal."""
        return [f"gamma {g:g}: {f['negatives']:.2%} of the negatives and {f['positives']:.1%} of the positives "
                f"(hardest first) carry {FIGURE4_SHARE:.0%} of the normalised FL" for g, f in self.fractions.items()]


def loss_curves(samples: LogitSamples, gammas: Sequence[float], points: int = 1000) -> Curves:
    """The CDF of each gamma for positives and for negatives."""
    curves: Curves = {}
    for kind, x_t in (("positive", samples.positives), ("negative", samples.negatives)):
        if x_t.numel() == 0:
            raise AnalysisError(f"no {kind} samples in {samples.images} images: nothing to plot")
        curves[kind] = {g: normalized_loss_cdf(x_t, g, points) for g in gammas}
    return curves


def plot_figure4(curves: Curves, stem: Path, subtitle: str = "") -> list[Path]:
    """Two panels (positive, negative samples), one CDF per gamma; returns the PNG and SVG at `stem`."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (kind, by_gamma) in zip(fig.subplots(1, 2), curves.items()):
        for gamma, (x, y) in by_gamma.items():
            ax.plot(x, y, label=f"γ = {gamma:g}", linewidth=2)
        ax.set(xlabel=f"fraction of {'foreground' if kind == 'positive' else 'background'} examples",
               ylabel="cumulative normalized loss", title=f"{kind} samples", xlim=(0, 1), ylim=(0, 1))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=9)
    title = "Figure 4: cumulative distribution of the normalised focal loss"
    fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""), fontsize=11)  # the run on its own line
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(suffix) for suffix in (".png", ".svg")]
    for path in paths:
        fig.savefig(path, dpi=150)
    return paths


def figure4(run_id: str, *, tracking_uri: str | None = None, out: str | Path | None = None,
            images: int = 200, gammas: Sequence[float] = FIGURE4_GAMMAS, max_negatives: int = 10_000_000,
            device: str | None = None, log: bool = True, overrides: Sequence[str] = (), points: int = 1000,
            seed: int = 0) -> Figure4:
    """Figure 4 for the trained model of child run `run_id`: the plot and its 80% fractions
    (JSON), written to `out` (default reports/<sweep>/) and, with `log`, logged to that run
    under reports/. `overrides`: dotted key=value changes to the run's config (e.g. data.root)."""
    client = open_client(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        values, model_path, tags = fetch_trial(client, run_id, Path(tmp))
        cfg = trial_config(values, overrides)
        model, val_set = trained_model(cfg, model_path)
    samples = sample_logits(model, val_set, images, max_negatives, seed, resolve_device(device or cfg.train.device))
    subtitle = (f"run {run_id[:8]} ({tags.get(layout.CELL, '')}): {samples.positives.numel():,} positive "
                f"and {samples.negatives.numel():,} negative samples of {samples.images} images")
    stem = Path(out or Path("reports") / tags.get(layout.NAME, "runs")) / f"figure4_{run_id[:8]}"
    paths = plot_figure4(loss_curves(samples, gammas, points), stem, subtitle)
    result = Figure4(paths, figure4_fractions(samples, gammas), stem.with_suffix(".json"))
    result.json.write_text(json.dumps({"run_id": run_id, "images": samples.images,
                                       "positives": samples.positives.numel(), "negatives": samples.negatives.numel(),
                                       "share": FIGURE4_SHARE,
                                       "hardest_fraction": {f"{g:g}": f for g, f in result.fractions.items()}},
                                      indent=1))
    if log:
        with store_errors(client.tracking_uri, "log reports to"):
            for path in [*paths, result.json]:
                client.log_artifact(run_id, str(path), artifact_path=layout.REPORT_DIR)
    return result


def fetch_trial(client: MlflowClient, run_id: str, dst: Path) -> tuple[dict, Path, dict[str, str]]:
    """(config dict, path of the downloaded model.pt, the run's tags) of a child run."""
    with store_errors(client.tracking_uri):
        run = get_run(client, run_id)
        if run.data.tags.get(layout.ROLE) != layout.ROLE_CHILD:  # parents hold no model
            raise AnalysisError(f"run {run_id} is not a trial (child) run of a sweep: pass a child run id")
        config, model = [_download(client, run_id, name, dst) for name in (layout.CONFIG_FILE,
                                                                            layout.MODEL_FILE)]
    return yaml.safe_load(config.read_text()), model, dict(run.data.tags)


def trial_config(values: dict[str, Any], overrides: Sequence[str]) -> TrialConfig:
    """The run's TrialConfig with dotted key=value overrides (e.g. data.root for this machine)."""
    try:
        merged = OmegaConf.merge(values, OmegaConf.from_dotlist(list(overrides)))
        return TrialConfig.from_dict(OmegaConf.to_container(merged))
    except (ConfigError, OmegaConfBaseException) as error:
        raise AnalysisError(f"the run's config.yaml: {str(error).splitlines()[0]}") from None


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line; argparse prints a usage error and exits 2 on a bad one."""
    parser = argparse.ArgumentParser(prog="python -m sweeps.loss_cdf", description=__doc__.split("\n")[0])
    parser.add_argument("run_id", help="a child (trial) run id")
    parser.add_argument("overrides", nargs="*", default=[], type=_override, metavar="key=value",
                        help="changes to the run's config, e.g. data.root=/data/coco")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: MLflow's)")
    parser.add_argument("--out", default=None, help="folder for the files (default: reports/<sweep>/)")
    parser.add_argument("--images", type=int, default=200, help="validation images scored")
    parser.add_argument("--gammas", type=_floats, default=list(FIGURE4_GAMMAS), help="e.g. 0,0.5,1,2")
    parser.add_argument("--max-negatives", type=int, default=10_000_000, help="negatives sampled (paper: ~10^7)")
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default: the run's train.device)")
    parser.add_argument("--no-log", dest="log", action="store_false", help="do not log the files to the run")
    parser.add_argument("--points", type=int, default=1000, help="points per curve")
    parser.add_argument("--seed", type=int, default=0, help="seed of the negatives' subsample")
    return parser.parse_intermixed_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; a user error prints `error: ...` and returns 2."""
    try:
        result = figure4(**vars(parse_args(sys.argv[1:] if argv is None else argv)))
    except (AnalysisError, ConfigError, DatasetError) as error:  # e.g. data.root missing here, another model.pt
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(result.lines()))
    print(f"figure 4 written to {result.paths[0]}, {result.paths[1]} and {result.json}")
    return 0


def _download(client: MlflowClient, run_id: str, name: str, dst: Path) -> Path:
    try:
        return Path(client.download_artifacts(run_id, name, str(dst)))
    except (MlflowException, OSError):
        raise AnalysisError(f"run {run_id} has no {name} artifact (a finished trial logs one)") from None


def _override(text: str) -> str:
    if not text.partition("=")[0] or "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value (e.g. data.root=/data/coco)")
    return text


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    sys.exit(main())
