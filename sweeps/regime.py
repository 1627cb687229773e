"""The class-imbalance regime of a profile: `python -m sweeps.regime [overrides]`.

Prints, for the composed profile's training data and beside the paper's
setting (COCO train2017 at 600 px; a synthetic stand-in with COCO's object
statistics unless `+regime.coco_file=` names the real annotation file):
anchors, positive / ignored / negative anchors per image, the positive
fraction per class output, the share of boxes no anchor matches, and the
share of the classification loss on well-classified negatives at
initialisation and, with `+regime.checkpoint=PATH` (run_trial's model.pt),
for that trained model (with the paper's Figure 4 fractions).

Options: `+regime.<key>=<value>`, the fields of `RegimeOptions`.
The figures are computed by `detector.regime`; this file composes the
config (Hydra's Compose API via `sweeps.compose`), reads the COCO file and
writes the Markdown table.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from detector import regime
from detector.config import ConfigError, ModelConfig, TrialConfig
from detector.data.coco import DatasetError, read_coco_json
from sweeps.compose import HelpRequested, compose_config, resolved, split_argv, usage
from sweeps.schema import trial_part


@dataclass
class RegimeOptions:
    """The `regime:` section of the command line (`+regime.<key>=<value>`)."""

    images: Optional[int] = None  # training images sampled; None: all
    loss_images: int = 64  # validation images scored for a checkpoint
    checkpoint: Optional[str] = None  # run_trial's model.pt: adds the trained model's loss shares
    paper: bool = True  # add the paper's column
    paper_images: int = 500  # images of the paper's column
    coco_file: Optional[str] = None  # the real instances_train2017.json for the paper's column
    seed: int = 0


def options(values: dict[str, Any]) -> RegimeOptions:
    """The `regime:` section of the resolved config, checked by OmegaConf against RegimeOptions."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(RegimeOptions, values.get("regime") or {}))
    except OmegaConfBaseException as error:  # an unknown key, a value of the wrong type
        raise ConfigError(f"regime.{error.full_key}: {str(error).splitlines()[0]}") from None


def add_init_shares(column: regime.Regime, prior_prob: Optional[float]) -> None:
    """column.extra: share of the loss on well-classified negatives at initialisation, per reference loss."""
    if prior_prob is None:
        return
    for name, gamma, alpha in regime.REFERENCE_LOSSES:
        column.extra[f"easy-negative loss share at init, {name}"] = \
            regime.init_loss_shares(column, prior_prob, gamma, alpha)["easy_negatives"]


def add_trained_shares(column: regime.Regime, figures: dict[str, Any], tag: str = "trained") -> None:
    """column.extra: the loss shares and Figure 4 fractions of `regime.trained_loss_figures`."""
    for name, shares in figures["shares"].items():
        column.extra[f"easy-negative loss share {tag}, {name}"] = shares["easy_negatives"]
        column.extra[f"share of negatives that are easy (p_t>.5), {tag}"] = shares["easy_fraction"]
    for gamma, fractions in figures["figure4"].items():
        column.extra[f"Fig.4 {tag}: hardest negatives with 80% of FL(g={gamma:g})"] = fractions["negatives"]
        column.extra[f"Fig.4 {tag}: hardest positives with 80% of FL(g={gamma:g})"] = fractions["positives"]


def _sizes(shares: dict[str, float]) -> str:
    """"a / b / c" percentages of small / medium / large ("—" where there is none)."""
    return " / ".join("—" if math.isnan(shares.get(k, math.nan)) else f"{100 * shares[k]:.0f}%"
                      for k in ("small", "medium", "large"))


def format_table(columns: dict[str, regime.Regime]) -> str:
    """The regime figures of several settings side by side, as a Markdown table."""
    def fmt(value: float, kind: str) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        if kind == "int":
            return f"{value:,.0f}"
        if kind == "pct":  # two significant digits below 1% (Figure 4's tails)
            return f"{100 * value:.2g}%" if 0 < value < 0.01 else f"{100 * value:.1f}%"
        if kind == "sci":
            return f"{value:.2e}"
        return f"{value:.2f}"

    rows: list[tuple[str, str, Callable[[regime.Regime], Any]]] = [
        ("images measured", "int", lambda r: r.images),
        ("classes K", "int", lambda r: r.num_classes),
        ("objects / image", "f", lambda r: r.objects_per_image),
        ("objects small / medium / large", "raw",
         lambda r: _sizes({k: r.object_size_shares.get(k, 0) for k in ("small", "medium", "large")})),
        ("anchors / image", "int", lambda r: r.anchors_per_image),
        ("positive anchors / image", "f", lambda r: r.positives_per_image),
        ("ignored anchors / image", "f", lambda r: r.ignored_per_image),
        ("negative anchors / image", "int", lambda r: r.negatives_per_image),
        ("positives / matchable box", "f", lambda r: r.positives_per_matched_box),
        ("positive fraction per class output", "sci", lambda r: r.positive_fraction),
        ("  most frequent class", "sci", lambda r: r.positive_fraction_top),
        ("  median class", "sci", lambda r: r.positive_fraction_median),
        ("GT boxes no anchor matches (IoU < fg)", "pct", lambda r: r.unmatchable_share),
        ("  of small / medium / large", "raw", lambda r: _sizes(r.unmatchable_by_size)),
    ]
    extra_keys: list[str] = []
    for column in columns.values():
        extra_keys += [k for k in column.extra if k not in extra_keys]
    names = list(columns)
    lines = ["| figure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, kind, get in rows:
        cells = [get(r) if kind == "raw" else fmt(get(r), kind) for r in columns.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for key in extra_keys:
        cells = [columns[n].extra.get(key, "—") for n in names]
        lines.append(f"| {key} | " + " | ".join(c if isinstance(c, str) else fmt(c, "pct") for c in cells) + " |")
    return "\n".join(lines)


def report(values: dict[str, Any]) -> str:
    """The Markdown table of the composed profile (and of the paper's setting)."""
    opts = options(values)
    config = TrialConfig.from_dict(trial_part(values))
    profile = regime.profile_regime(config, opts.images, opts.seed)
    add_init_shares(profile, config.model.prior_prob)
    if opts.checkpoint:
        add_trained_shares(profile, regime.checkpoint_figures(config, opts.checkpoint, opts.loss_images, opts.seed))
    columns = {f"{values.get('profile_name', 'this')} profile": profile}
    if opts.paper:
        coco = read_coco_json(Path(opts.coco_file).expanduser()) if opts.coco_file else None
        label = "paper (COCO train2017)" if coco else "paper (COCO stand-in)"
        columns[label] = regime.paper_regime(images=opts.paper_images, seed=opts.seed, coco=coco)
        add_init_shares(columns[label], ModelConfig().prior_prob)  # paper_regime's model: the schema's defaults
    return format_table(columns)


def main(argv: Optional[Sequence[str]] = None) -> None:
    try:
        overrides, config_dir = split_argv(sys.argv[1:] if argv is None else argv)
        print(report(resolved(compose_config(overrides, config_dir))))
    except HelpRequested as request:
        print(usage("sweeps.regime", request.config_dir))
        print(f"  +regime.<key>=<value> with key one of {', '.join(f.name for f in fields(RegimeOptions))} "
              "(see RegimeOptions in sweeps/regime.py)")
    except (ConfigError, DatasetError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)  # a user error: one line, no traceback
        sys.exit(2)


if __name__ == "__main__":
    main()
