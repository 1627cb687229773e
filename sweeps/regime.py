"""The class-imbalance regime of a profile: `python -m sweeps.regime [overrides]`.

Prints, for the composed profile's training data and beside the paper's
setting (COCO train2017 at 600 px; a synthetic stand-in with COCO's object
statistics unless `+regime.coco_file=` names the real annotation file):
anchors, positive / ignored / negative anchors per image, the positive
fraction per class output, the share of boxes no anchor matches, and the
share of the classification loss on well-classified negatives at
initialisation and, with `+regime.checkpoint=PATH` (run_trial's model.pt),
for that trained model (with the paper's Figure 4 fractions).

Options (all `+regime.<key>=<value>`): images (training images sampled;
default all), loss_images (validation images scored for a checkpoint;
default 64), checkpoint, paper (true: add the paper's column),
paper_images (stand-in images; default 500), coco_file.
The figures are computed by `detector.regime`; this file only composes
(like `sweeps.train`: Hydra's Compose API via `sweeps.compose`).
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Sequence

from detector import regime
from detector.config import ConfigError, TrialConfig
from detector.data.coco import DatasetError
from sweeps.compose import HelpRequested, compose_config, resolved, split_argv, usage
from sweeps.schema import trial_part

DEFAULTS = {"images": None, "loss_images": 64, "checkpoint": None, "paper": True, "paper_images": 500,
            "coco_file": None, "seed": 0}


def options(values: dict[str, Any]) -> dict[str, Any]:
    """DEFAULTS updated by the `regime:` section of the resolved config (unknown keys are an error)."""
    given = values.get("regime") or {}
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown option regime.{unknown[0]}; allowed: {', '.join(sorted(DEFAULTS))}")
    return {**DEFAULTS, **given}


def report(values: dict[str, Any]) -> str:
    """The Markdown table of the composed profile (and of the paper's setting)."""
    opts = options(values)
    config = TrialConfig.from_dict(trial_part(values))
    profile = regime.profile_regime(config, opts["images"], opts["seed"])
    if opts["checkpoint"]:
        figures = regime.checkpoint_figures(config, opts["checkpoint"], opts["loss_images"], opts["seed"])
        regime.add_trained_shares(profile, figures)
    columns = {f"{values.get('profile_name', 'this')} profile": profile}
    if opts["paper"]:
        label = "paper (COCO train2017)" if opts["coco_file"] else "paper (COCO stand-in)"
        columns[label] = regime.paper_regime(images=opts["paper_images"], seed=opts["seed"],
                                             ann_file=opts["coco_file"])
    return regime.format_table(columns)


def main(argv: Optional[Sequence[str]] = None) -> None:
    try:
        overrides, config_dir = split_argv(sys.argv[1:] if argv is None else argv)
        print(report(resolved(compose_config(overrides, config_dir))))
    except HelpRequested as request:
        print(usage("sweeps.regime", request.config_dir))
        print(f"  +regime.<key>=<value> with key one of {', '.join(DEFAULTS)} (see the module's docstring)")
    except (ConfigError, DatasetError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)  # a user error: one line, no traceback
        sys.exit(2)


if __name__ == "__main__":
    main()
