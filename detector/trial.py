"""One trial: build from config, fit, evaluate. Callable from a notebook, a
test or a Ray worker alike; it knows nothing of Ray, MLflow or Hydra.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Callable, Optional

import torch
from torch.utils.data import DataLoader

from detector.config import TrialConfig
from detector.data.loader import build_datasets, build_train_loader, collate
from detector.evaluate import (CocoEvaluation, coco_evaluation, draw_detections, predict, time_inference,
                               timing_inputs, write_pr_curves)
from detector.model import RetinaNet, build_model
from detector.pretrain import resolve_weights
from detector.train import NonFiniteLossError, Trainer, resolve_device, seed_everything

__all__ = ["run_trial", "NonFiniteLossError"]

Report = Callable[[dict], None]
PREDICTION_IMAGES = 4  # validation images drawn with their predictions into workdir/predictions/
log = logging.getLogger(__name__)


class _Evaluator:
    """COCO metrics of the model on the validation set, reported as they come."""

    def __init__(self, model: RetinaNet, val_set, cfg: TrialConfig, device: torch.device, report: Report) -> None:
        self.model, self.val_set, self.cfg, self.device, self.report = model, val_set, cfg, device, report
        # Its own generator: iterating a DataLoader without one draws a seed from
        # torch's global RNG, so each evaluation shifted the training's random
        # flips after it (train.eval_every changed the trained model).
        self.loader = DataLoader(val_set, batch_size=cfg.train.batch_size, collate_fn=collate,
                                 num_workers=cfg.data.num_workers, generator=torch.Generator().manual_seed(0),
                                 pin_memory=device.type == "cuda")
        self.last: Optional[CocoEvaluation] = None  # the latest evaluation, for the files of a finished trial

    def __call__(self, iteration: int) -> dict[str, float]:
        detections = predict(self.model, self.loader, self.val_set.label_to_category_id, self.device)
        self.last = coco_evaluation(self.val_set.coco, detections, backend=self.cfg.eval.backend,
                                    image_ids=list(self.val_set.image_ids))
        self.report({"iteration": iteration, **self.last.metrics})
        return self.last.metrics


def _speed(model: RetinaNet, val_set, cfg: TrialConfig, device: torch.device) -> float:
    """Inference ms/image over the first validation images (warm-up excluded)."""
    images, warmup = timing_inputs(val_set, cfg.eval)
    return time_inference(model, images, device, warmup=warmup, channels_last=cfg.eval.channels_last,
                          batch=cfg.eval.timing_batch)


@torch.inference_mode()
def _write_pictures(model: RetinaNet, val_set, evaluation: CocoEvaluation, workdir: Path,
                    device: torch.device) -> None:
    """For a person looking at the trial: per_class.json, pr_curves.png and the
    first PREDICTION_IMAGES validation images with predictions and ground truth
    drawn, predictions/<image id>.png (file names as analysis/layout.py names them)."""
    (workdir / "per_class.json").write_text(json.dumps(evaluation.per_class, indent=2))
    write_pr_curves(evaluation, workdir / "pr_curves.png")
    folder = workdir / "predictions"
    folder.mkdir(exist_ok=True)
    model.eval()
    for index in range(min(PREDICTION_IMAGES, len(val_set))):
        image, target = val_set[index]
        output = {k: v.cpu() for k, v in model([image.to(device)])[0].items()}
        picture = draw_detections(image, target, output, val_set.category_names)
        picture.save(folder / f"{target['image_id']}.png")


CHECKPOINT_NAME = "checkpoint_last.pt"  # the training state in a trial's workdir (train.checkpoint_every)


def device_name(device: torch.device) -> str:
    """"cpu", or the CUDA device's name (what a run's env.device tag says)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


CORRUPT_SUFFIX = ".corrupt"  # a checkpoint that cannot be read is renamed to <name>.corrupt
# What torch.load raises on a damaged file: a truncated zip (RuntimeError), bytes that are
# not a checkpoint (UnpicklingError), an empty file (EOFError); no "iteration": KeyError, TypeError.
_DAMAGED = (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, KeyError, TypeError)


def read_checkpoint(path: Path) -> Optional[dict]:
    """The training state `Trainer.save` wrote at `path` (on the CPU), or None if there is none.

    A damaged file would fail the trial on every re-run, forever: it is set aside
    as <name>.corrupt with a one-line warning, and the trial starts from the beginning."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        int(state["iteration"])
    except _DAMAGED as error:
        aside = path.with_name(path.name + CORRUPT_SUFFIX)
        path.replace(aside)
        reason = (str(error).strip().splitlines() or [""])[0][:120]
        log.warning("checkpoint %s is unreadable (%s: %s): set aside as %s; training from the start",
                    path, type(error).__name__, reason, aside.name)
        return None
    return state


def _resume(trainer: Trainer, checkpoint: Path) -> None:
    """Continue an interrupted trial from its last readable checkpoint, if there is one."""
    state = read_checkpoint(checkpoint)
    if state is not None:
        trainer.load_state_dict(state)


def run_trial(cfg: TrialConfig, *, workdir: Path, report: Optional[Report] = None) -> dict[str, float]:
    """Train and evaluate `cfg`; write workdir/model.pt and workdir/metrics.json.

    report(metrics) receives {"iteration", "loss", "loss_cls", "loss_box", "lr"}
    every train.log_every iterations and {"iteration", "AP", ...} after each
    evaluation. Returns AP, AP50, AP75, APS, APM, APL (fractions),
    ms_per_image, train_images_per_s, train_seconds, iterations, and
    `device` (its name, e.g. "cpu" or the CUDA device's). Also writes
    workdir/per_class.json ({category: AP}), workdir/pr_curves.png and
    workdir/predictions/<image id>.png. Raises NonFiniteLossError when the
    loss diverges. Continues from workdir/checkpoint_last.pt if there is one,
    and leaves it there for the caller to remove once the result is safe.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    report = report or (lambda metrics: None)
    cfg = resolve_weights(cfg)  # model.pretrained=synthetic: the cached weights (made here if absent)
    seed_everything(cfg.train.seed)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    device = resolve_device(cfg.train.device)
    train_set, val_set = build_datasets(cfg.data)
    model = build_model(cfg.model, cfg.loss, train_set.num_classes)
    trainer = Trainer(model, cfg.train, device)
    checkpoint = workdir / CHECKPOINT_NAME
    _resume(trainer, checkpoint)
    evaluate = _Evaluator(trainer.model, val_set, cfg, device, report)
    batches = build_train_loader(train_set, cfg.train.batch_size, cfg.data.num_workers,
                                 cfg.train.seed + trainer.iteration, pin_memory=device.type == "cuda")
    trainer.fit(batches, report, evaluate, checkpoint)
    metrics = evaluate(trainer.iteration)
    result = {**metrics, "ms_per_image": _speed(trainer.model, val_set, cfg, device),
              "train_images_per_s": trainer.images_seen / max(trainer.train_seconds, 1e-9),
              "train_seconds": trainer.train_seconds, "iterations": float(trainer.iteration),
              "device": device_name(device)}
    torch.save(trainer.model.state_dict(), workdir / "model.pt")
    _write_pictures(trainer.model, val_set, evaluate.last, workdir, device)
    (workdir / "metrics.json").write_text(json.dumps(result, indent=2))
    # The checkpoint stays: until the caller has stored model.pt, a kill would otherwise mean
    # training again from zero. The caller removes it (a sweep's driver, once the run is FINISHED).
    return result
