"""Figure 4 of the paper: CDFs of the normalised focal loss over a trained model's anchors.

    python -m analysis.loss_cdf run_id=<child run id> [tracking_uri=URI] [out=DIR]
        [images=200] [gammas=0,0.5,1,2] [max_negatives=10000000] [device=auto]
        [log=true] [data.root=/data/coco] [data.<key>=<value> ...]

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

The child run's `config.yaml` and `checkpoint/model.pt` artifacts rebuild
the model; the images are its validation split. This is the one analysis
module that imports detector/ (it needs the model); tables never do.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from torch import Tensor

from analysis.errors import AnalysisError
from analysis.plots import Plot, Series
from analysis.records import parse_param
from analysis.runs import get_run, open_client, store_errors
from detector.config import ConfigError, TrialConfig
from detector.data.coco import DatasetError
from detector.data.loader import build_datasets
from detector.losses import sigmoid_focal_loss
from detector.model import RetinaNet, build_model
from detector.regime import FIGURE4_SHARE, hardest_fraction
from detector.train import resolve_device

DEFAULTS: dict[str, Any] = {"run_id": None, "tracking_uri": None, "out": None, "images": 200,
                            "gammas": "0,0.5,1,2", "max_negatives": 10_000_000, "device": None,
                            "log": True, "points": 1000, "seed": 0}
BATCH = 8  # images per forward pass


@dataclass
class Samples:
    """x_t (the logit signed so that p_t = sigmoid(x_t)) of sampled (anchor, class) pairs.

    positives: (P,) pairs whose anchor is assigned to a box of that class.
    negatives: (Q,) the other pairs of non-ignored anchors, randomly subsampled.
    """

    positives: Tensor
    negatives: Tensor
    images: int = 0
    total_negatives: int = 0  # before subsampling


@dataclass
class Curves:
    """Normalised-loss CDFs: kind ("positive"/"negative") -> gamma -> (fraction, cumulative)."""

    by_kind: dict[str, dict[float, tuple[list[float], list[float]]]] = field(default_factory=dict)


@dataclass
class Figure4:
    """Figure 4 of one trained model: the plot, and the figure read off it.

    fractions: gamma -> {"negatives": f, "positives": f}, f the fraction of the
    samples, hardest first, that carries 80% of the normalised FL_gamma
    (`detector.regime.hardest_fraction`); json: where they are written.
    """

    plot: Plot
    fractions: dict[float, dict[str, float]]
    json: Path

    def lines(self) -> list[str]:
        """One line per gamma, for the terminal."""
        return [f"gamma {g:g}: {f['negatives']:.2%} of the negatives and {f['positives']:.1%} of the positives "
                f"(hardest first) carry {FIGURE4_SHARE:.0%} of the normalised FL" for g, f in self.fractions.items()]


def hardest_fractions(samples: Samples, gammas: Sequence[float]) -> dict[float, dict[str, float]]:
    """gamma -> the fraction of the hardest negatives and positives carrying 80% of FL_gamma."""
    return {g: {"negatives": hardest_fraction(samples.negatives, g),
                "positives": hardest_fraction(samples.positives, g)} for g in gammas}


def normalized_loss_cdf(x_t: Tensor, gamma: float, points: int = 1000) -> tuple[list[float], list[float]]:
    """CDF of FL(p_t) = -(1 - p_t)^gamma log(p_t) over samples, normalised to sum to 1.

    x_t: (S,) signed logits. Returns `points` (fraction of samples, cumulative
    share of the loss) pairs, samples sorted from the lowest loss to the
    highest; both end at 1. No alpha: a constant weight cancels in the
    normalisation.
    """
    if x_t.numel() == 0:
        raise AnalysisError("no samples to compute a loss CDF from")
    loss = sigmoid_focal_loss(x_t.double(), torch.ones_like(x_t, dtype=torch.float64), alpha=None, gamma=gamma)
    cumulative = torch.cumsum(torch.sort(loss).values, 0)
    total = cumulative[-1]
    if not total > 0:  # every sample perfectly classified: the loss spreads evenly, by convention
        cumulative = torch.arange(1, loss.numel() + 1, dtype=torch.float64)
        total = cumulative[-1]
    index = torch.linspace(0, loss.numel() - 1, min(points, loss.numel())).round().long()
    fraction = (index + 1).double() / loss.numel()
    return fraction.tolist(), (cumulative[index] / total).tolist()


@torch.no_grad()
def collect_samples(model: RetinaNet, dataset, images: int, device: torch.device,
                    max_negatives: int, seed: int = 0) -> Samples:
    """Score the first `images` images of `dataset`; keep all positives and a random cap of negatives."""
    model.eval().to(device)
    count = min(images, len(dataset))
    per_image = -(-max_negatives // max(count, 1))  # spread the cap evenly over the images
    generator = torch.Generator().manual_seed(seed)
    positives, negatives, total = [], [], 0
    for start in range(0, count, BATCH):
        batch = [dataset[i] for i in range(start, min(start + BATCH, count))]
        logits, _, anchors, _ = model.raw_outputs([image.to(device) for image, _ in batch])
        targets, valid = model.criterion.classification_targets(anchors, [t for _, t in batch])
        logits, targets, valid = logits.float().cpu(), targets.cpu(), valid.cpu()  # (N, M, K), (N, M, K), (N, M)
        positives.append(logits[targets == 1])
        for image_logits, image_targets, image_valid in zip(logits, targets, valid):
            mask = (image_targets == 0) & image_valid.unsqueeze(-1)  # y = 0 on non-ignored anchors
            x_t = -image_logits[mask]  # x_t = -x where y = 0
            total += x_t.numel()
            keep = torch.randperm(x_t.numel(), generator=generator)[:per_image]
            negatives.append(x_t[keep])
    return Samples(torch.cat(positives), torch.cat(negatives), count, total)


def loss_curves(samples: Samples, gammas: Sequence[float], points: int = 1000) -> Curves:
    """The CDF of each gamma for positives and for negatives."""
    curves = Curves()
    for kind, x_t in (("positive", samples.positives), ("negative", samples.negatives)):
        if x_t.numel() == 0:
            raise AnalysisError(f"no {kind} samples in {samples.images} images: nothing to plot")
        curves.by_kind[kind] = {g: normalized_loss_cdf(x_t, g, points) for g in gammas}
    return curves


def plot_figure4(curves: Curves, stem: Path, subtitle: str = "") -> Plot:
    """Two panels (positive, negative samples), one CDF per gamma; PNG and SVG at `stem`."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    series = []
    for ax, (kind, by_gamma) in zip(axes, curves.by_kind.items()):
        for gamma, (x, y) in by_gamma.items():
            series.append(Series(f"γ = {gamma:g}", x, y, panel=kind))
            ax.plot(x, y, label=series[-1].label, linewidth=2)
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
    return Plot(stem.name, paths, series)


def figure4(run_id: str, *, tracking_uri: str | None = None, out: str | Path | None = None,
            images: int = 200, gammas: Sequence[float] = (0.0, 0.5, 1.0, 2.0),
            max_negatives: int = 10_000_000, device: str | None = None, log: bool = True,
            config_overrides: dict[str, Any] | None = None, points: int = 1000, seed: int = 0) -> Figure4:
    """Figure 4 for the trained model of child run `run_id`: the plot and its 80% fractions
    (JSON), written to `out` (default reports/<sweep>/) and, with `log`, logged to that run
    under `reports/`."""
    client = open_client(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        values, model_path, tags = fetch_trial(client, run_id, Path(tmp))
        cfg = trial_config(values, config_overrides or {})
        _, val_set = build_datasets(cfg.data, train=False)
        model = load_model(cfg, model_path, val_set.num_classes)
    samples = collect_samples(model, val_set, images, resolve_device(device or cfg.train.device),
                              max_negatives, seed)
    subtitle = (f"run {run_id[:8]} ({tags.get('sweep.cell', '')}): {samples.positives.numel():,} positive "
                f"and {samples.negatives.numel():,} negative samples of {samples.images} images")
    out_dir = Path(out) if out else Path("reports") / tags.get("sweep.name", "runs")
    stem = out_dir / f"figure4_{run_id[:8]}"
    plot = plot_figure4(loss_curves(samples, gammas, points), stem, subtitle)
    result = Figure4(plot, hardest_fractions(samples, gammas), stem.with_suffix(".json"))
    result.json.write_text(json.dumps({"run_id": run_id, "images": samples.images,
                                       "positives": samples.positives.numel(), "negatives": samples.negatives.numel(),
                                       "share": FIGURE4_SHARE,
                                       "hardest_fraction": {f"{g:g}": f for g, f in result.fractions.items()}},
                                      indent=1))
    if log:
        with store_errors(client.tracking_uri, "log reports to"):
            for path in [*plot.paths, result.json]:
                client.log_artifact(run_id, str(path), artifact_path="reports")
    return result


def fetch_trial(client: MlflowClient, run_id: str, dst: Path) -> tuple[dict, Path, dict[str, str]]:
    """(config dict, path of the downloaded model.pt, the run's tags) of a child run."""
    with store_errors(client.tracking_uri):
        run = get_run(client, run_id)
        if run.data.tags.get("sweep.role") != "child":  # parents hold no model
            raise AnalysisError(f"run {run_id} is not a trial (child) run of a sweep: pass a child run id")
        paths = [_download(client, run_id, name, dst) for name in ("config.yaml", "checkpoint/model.pt")]
    values = yaml.safe_load(paths[0].read_text())
    return values, paths[1], dict(run.data.tags)


def trial_config(values: dict[str, Any], overrides: dict[str, Any]) -> TrialConfig:
    """The run's TrialConfig with dotted overrides (e.g. data.root for this machine)."""
    values = json.loads(json.dumps(values))
    for dotted, value in overrides.items():
        node = values
        *parents, leaf = dotted.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    try:
        return TrialConfig.from_dict(values)
    except ConfigError as error:
        raise AnalysisError(f"the run's config.yaml: {error}") from None


def load_model(cfg: TrialConfig, model_path: Path, num_classes: int) -> RetinaNet:
    """The trial's RetinaNet with its trained weights (a plain state dict: no pickled code)."""
    model = build_model(cfg.model, cfg.loss, num_classes)
    state = torch.load(model_path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise AnalysisError(f"{model_path.name} does not fit the run's config: {str(error).splitlines()[0]}") from None
    return model


def parse_args(argv: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """key=value arguments -> (options, dotted config overrides such as data.root)."""
    options, overrides = dict(DEFAULTS), {}
    for arg in argv:
        key, sep, text = arg.partition("=")
        if not sep:
            raise AnalysisError(f"argument {arg!r} is not key=value (e.g. run_id=<child run id>)")
        if "." in key:
            overrides[key] = parse_param(text)
        elif key in DEFAULTS:
            options[key] = text
        else:
            raise AnalysisError(f"unknown argument {key}; allowed: {', '.join(DEFAULTS)}, data.<key>, model.<key>")
    if not options["run_id"]:
        raise AnalysisError("run_id=<child run id> is required")
    return options, overrides


def figure4_kwargs(argv: Sequence[str]) -> dict[str, Any]:
    """The keyword arguments of `figure4` from key=value arguments (numbers checked)."""
    options, overrides = parse_args(argv)
    try:
        return {"run_id": options["run_id"], "tracking_uri": options["tracking_uri"], "out": options["out"],
                "images": int(options["images"]), "gammas": _floats(options["gammas"]),
                "max_negatives": int(options["max_negatives"]), "device": options["device"],
                "log": str(options["log"]).lower() not in ("false", "0", "no"),
                "config_overrides": overrides, "points": int(options["points"]), "seed": int(options["seed"])}
    except ValueError as error:
        raise AnalysisError(f"not a number: {error}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; a user error prints `error: ...` and returns 2."""
    try:
        result = figure4(**figure4_kwargs(sys.argv[1:] if argv is None else argv))
    except (AnalysisError, DatasetError) as error:  # DatasetError: e.g. data.root missing here
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(result.lines()))
    print(f"figure 4 written to {result.plot.paths[0]}, {result.plot.paths[1]} and {result.json}")
    return 0


def _download(client: MlflowClient, run_id: str, name: str, dst: Path) -> Path:
    try:
        return Path(client.download_artifacts(run_id, name, str(dst)))
    except (MlflowException, OSError):
        raise AnalysisError(f"run {run_id} has no {name} artifact (a finished trial logs one)") from None


def _floats(text: str) -> list[float]:
    return [float(part) for part in str(text).split(",") if part.strip()]


if __name__ == "__main__":
    sys.exit(main())
