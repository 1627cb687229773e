"""How a trial maps to a row of the paper's tables: the row keys of each ablation.

Each function reads the trial's config values (its dotted overrides, else
its logged params) and returns the tuple the paper's rows are keyed by.
"""

from __future__ import annotations

from typing import Any

from analysis.runs import TrialRecord

# loss.name -> the method names the paper uses (Table 1d, Appendix Table 3).
LOSS_LABELS = {"ce": "CE", "focal": "FL", "fl_star": "FL*", "ohem": "OHEM"}


def alpha_key(trial: TrialRecord) -> tuple[Any]:
    """Table 1a: (alpha,)."""
    return (trial.value("loss.alpha"),)


def gamma_alpha_key(trial: TrialRecord) -> tuple[Any, Any]:
    """Table 1b: (gamma, alpha)."""
    return (trial.value("loss.gamma"), trial.value("loss.alpha"))


def anchors_key(trial: TrialRecord) -> tuple[Any, Any]:
    """Table 1c: (scales per octave, number of aspect ratios)."""
    ratios = trial.value("model.anchors.aspect_ratios")
    return (trial.value("model.anchors.scales_per_octave"), _length(ratios))


def ohem_key(trial: TrialRecord) -> tuple[Any, Any, Any]:
    """Table 1d: (method, batch per image, NMS threshold); batch/NMS None unless OHEM."""
    method = method_label(trial)
    if not method.startswith("OHEM"):
        return (method, None, None)
    return (method, trial.value("loss.ohem.batch_per_image"), trial.value("loss.ohem.nms_thresh"))


def speed_key(trial: TrialRecord) -> tuple[Any, Any]:
    """Table 1e: (ResNet depth, input scale = data.min_size)."""
    return (trial.value("model.depth"), trial.value("data.min_size"))


def fl_star_key(trial: TrialRecord) -> tuple[Any, Any, Any]:
    """Appendix Table 3: (loss, gamma, beta); gamma only for FL/FL*, beta only for FL*."""
    method = method_label(trial)
    gamma = trial.value("loss.gamma") if method in ("FL", "FL*") else None
    beta = trial.value("loss.beta") if method == "FL*" else None
    return (method, gamma, beta)


def search_key(trial: TrialRecord) -> tuple[Any, ...]:
    """The open search: one row per trial (its run id), values shown beside it."""
    return (trial.run_id,)


def method_label(trial: TrialRecord) -> str:
    """"FL", "CE", "FL*", "OHEM" or "OHEM 1:3" (max_pos_fraction 0.25 = 1 positive : 3)."""
    name = str(trial.value("loss.name", "?"))
    label = LOSS_LABELS.get(name, name)
    fraction = trial.value("loss.ohem.max_pos_fraction") if name == "ohem" else None
    if fraction:
        return f"{label} 1:{(1.0 - fraction) / fraction:g}"
    return label


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, (list, tuple)) else None
