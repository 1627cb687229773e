"""Training: SGD with momentum and weight decay, linear warm-up then step
decay over an iteration schedule, AMP on CUDA, resumable checkpoints.

"RetinaNet is trained with stochastic gradient descent (SGD) ... with a
total of 16 images per minibatch ... an initial learning rate of 0.01,
which is then divided by 10 at 60k and again at 80k iterations."
"""

from __future__ import annotations

import bisect
import random
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from torch import nn

from detector.config import TrainConfig

Report = Callable[[dict], None]
Batch = tuple[list[torch.Tensor], list[dict]]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops instead of running on silently."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a reproducible run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """"auto" is CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_factor(iteration: int, cfg: TrainConfig) -> float:
    """Multiplier of cfg.lr at `iteration`: linear warm-up from warmup_factor, then steps."""
    decay = cfg.lr_decay ** bisect.bisect_right(cfg.steps, iteration)
    if iteration >= cfg.warmup_iters:
        return decay
    alpha = iteration / cfg.warmup_iters
    return decay * (cfg.warmup_factor * (1.0 - alpha) + alpha)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """SGD over the trainable parameters and the warm-up + step schedule."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, cfg))
    return optimizer, scheduler


def to_device(batch: Batch, device: torch.device) -> Batch:
    """The batch on `device`, copied without waiting (from pinned memory the copy overlaps compute)."""
    images, targets = batch
    images = [image.to(device, non_blocking=True) for image in images]
    targets = [{k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
               for t in targets]
    return images, targets


def _criterion(model: nn.Module) -> Optional[object]:
    """The model's loss object if it has state to checkpoint (RetinaNet.criterion), else None."""
    criterion = getattr(model, "criterion", None)
    return criterion if hasattr(criterion, "state_dict") and hasattr(criterion, "load_state_dict") else None


class Trainer:
    """Runs the iteration loop of one model; state (iteration, optimiser) is checkpointable."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device) -> None:
        self.model = model.to(device)
        if cfg.channels_last:  # the images stay NCHW: the first convolution converts them
            self.model.to(memory_format=torch.channels_last)
        self.cfg = cfg
        self.device = device
        self.optimizer, self.scheduler = build_optimizer(model, cfg)
        self.use_amp = cfg.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.iteration = 0
        self.images_seen = 0
        self.train_seconds = 0.0
        # The first iteration whose loss was not finite (-1: none), kept on the device: testing
        # the loss every step would make the host wait for each step's forward (a sync) before it
        # could queue the backward; `checked` reads it when the loop reports, evaluates or saves.
        self._first_nonfinite = torch.full((), -1, dtype=torch.long, device=device)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One SGD step on `batch`; returns the loss parts as 0-dim tensors on the device.

        Nothing here waits for the device; `checked(parts)` turns the parts into
        floats and raises NonFiniteLossError if any loss since the start was not finite."""
        images, targets = to_device(batch, self.device)
        with torch.autocast(self.device.type, enabled=self.use_amp):
            losses = self.model(images, targets)
        loss = losses["loss_cls"] + losses["loss_box"]
        first = self._first_nonfinite
        self._first_nonfinite = torch.where(~torch.isfinite(loss.detach()) & (first < 0),
                                            first.new_full((), self.iteration), first)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.iteration += 1
        self.images_seen += len(images)
        return {"loss": loss.detach(), "loss_cls": losses["loss_cls"].detach(),
                "loss_box": losses["loss_box"].detach(), "num_pos": torch.as_tensor(losses["num_pos"])}

    def checked(self, parts: dict[str, torch.Tensor]) -> dict[str, float]:
        """`parts` of the latest step as floats (this waits for the device), after raising
        NonFiniteLossError if a loss since the start was not finite (its iteration named)."""
        values = {name: float(value) for name, value in parts.items()}
        first = int(self._first_nonfinite)
        if first >= 0:
            raise NonFiniteLossError(
                f"non-finite loss at iteration {first} (found at {self.iteration}: loss_cls={values['loss_cls']:.4g}, "
                f"loss_box={values['loss_box']:.4g}, lr {self.scheduler.get_last_lr()[0]:.4g})")
        return values

    def state_dict(self) -> dict:
        """Everything a resumed run needs, as tensors, numbers, lists and dicts only, so that a
        checkpoint loads with torch.load(..., weights_only=True) (no pickled objects).

        "criterion" holds the loss's running state (the "ema" normaliser), which
        is not a parameter or buffer of the model.
        """
        criterion = _criterion(self.model)
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "criterion": criterion.state_dict() if criterion else {},
                "iteration": self.iteration, "images_seen": self.images_seen,
                "train_seconds": self.train_seconds, "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        criterion = _criterion(self.model)
        if criterion and state.get("criterion"):
            criterion.load_state_dict(state["criterion"])
        self.iteration, self.images_seen = state["iteration"], state["images_seen"]
        self.train_seconds = state["train_seconds"]
        torch.set_rng_state(state["torch_rng"])

    def save(self, path: Path) -> None:
        """Write the training state atomically (a killed run never leaves half a file)."""
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)

    def load(self, path: Path) -> None:
        """Continue from a checkpoint written by `save` (loaded with weights_only=True)."""
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))

    def fit(self, batches: Iterator[Batch], report: Optional[Report] = None,
            evaluate: Optional[Callable[[int], dict]] = None, checkpoint: Optional[Path] = None) -> None:
        """Train until cfg.iterations, reporting every log_every and evaluating every eval_every."""
        cfg = self.cfg
        self.model.train()
        while self.iteration < cfg.iterations:
            start = time.perf_counter()
            parts = self.step(next(batches))
            self.train_seconds += time.perf_counter() - start  # the host's time: the device may lag (see below)
            done = self.iteration == cfg.iterations
            log = self.iteration % cfg.log_every == 0 or done
            evaluating = bool(evaluate and cfg.eval_every and self.iteration % cfg.eval_every == 0 and not done)
            saving = bool(checkpoint and cfg.checkpoint_every and self.iteration % cfg.checkpoint_every == 0)
            if log or evaluating or saving:  # the loop's only waits for the device: never report, score or save a NaN
                start = time.perf_counter()
                values = self.checked(parts)
                self.train_seconds += time.perf_counter() - start  # the queued steps' remaining device time
                if report and log:
                    report({"iteration": self.iteration, "lr": self.scheduler.get_last_lr()[0], **values})
            if evaluating:
                evaluate(self.iteration)
                self.model.train()
            if saving:
                self.save(checkpoint)
