"""One trial from the command line: `python -m sweeps.train [overrides] [--config-dir DIR]`.

Trains and evaluates the composed config (default profile: cpu), prints the
six COCO AP numbers and the inference ms/image, and writes them as
`metrics.json` in `<output_dir>/train/<date>/<time>/` (Hydra's `hydra.run.dir`),
with model.pt and the config.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from omegaconf import OmegaConf

from detector.config import ConfigError, TrialConfig
from detector.data.coco import DatasetError
from detector.evaluate import METRIC_NAMES
from detector.trial import CHECKPOINT_NAME, NonFiniteLossError, run_trial
from sweeps.compose import HelpRequested, compose_config, resolved, split_argv, usage
from sweeps.schema import trial_part


def _print_progress(metrics: dict) -> None:
    """One line per report: training losses, or the metrics of an evaluation."""
    if "loss" in metrics:
        print(f"iter {metrics['iteration']:>6}  loss {metrics['loss']:.4f}  (cls {metrics['loss_cls']:.4f}, "
              f"box {metrics['loss_box']:.4f})  lr {metrics['lr']:.5f}", flush=True)
    else:
        print(f"iter {metrics['iteration']:>6}  eval  AP {metrics['AP']:.3f}  AP50 {metrics['AP50']:.3f}", flush=True)


def format_result(result: dict) -> str:
    """The six AP numbers (percent, as in the paper) and ms/image on one line."""
    # COCOeval gives -1 where no ground truth has that size (e.g. no large objects).
    aps = "  ".join(f"{name} {100 * result[name]:.1f}" if result[name] >= 0 else f"{name} —"
                    for name in METRIC_NAMES)
    return f"{aps}  |  {result['ms_per_image']:.1f} ms/image"


def main(argv: Optional[Sequence[str]] = None) -> None:
    try:
        overrides, config_dir = split_argv(sys.argv[1:] if argv is None else argv)
        cfg = compose_config(overrides, config_dir, with_hydra=True)
        values = resolved(cfg)
        config = TrialConfig.from_dict(trial_part(values))
        workdir = Path(cfg.hydra.run.dir)  # Hydra's usual place: hydra.run.dir=... moves it
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(values)))
        result = run_trial(config, workdir=workdir, report=_print_progress)
        (workdir / CHECKPOINT_NAME).unlink(missing_ok=True)  # model.pt is written: the result is safe
    except HelpRequested as request:
        print(usage("sweeps.train", request.config_dir))
        return
    except (ConfigError, DatasetError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)  # a user error: one line, no traceback
        sys.exit(2)
    except NonFiniteLossError as error:
        print(f"training diverged: {error}", file=sys.stderr)
        sys.exit(1)
    print(format_result(result))
    print(f"results: {workdir / 'metrics.json'}")


if __name__ == "__main__":
    main()
