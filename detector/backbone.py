"""ResNet + FPN producing P3-P7 (paper section 4, "Feature Pyramid Network Backbone").

"P3 to P5 are computed from the output of the corresponding ResNet residual
stage (C3 through C5) using top-down and lateral connections; P6 is obtained
via a 3x3 stride-2 conv on C5, and P7 by applying ReLU followed by a 3x3
stride-2 conv on P6."

`RESNETS` (depth -> torchvision constructor, weights enum, stage widths) is
the registry that config validation reads for the allowed `model.depth`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple, Optional

import torch
import torchvision
from torch import nn
from torchvision.models import ResNet, WeightsEnum
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from detector.sections import ConfigError, ModelConfig

IMAGENET = "imagenet"  # model.pretrained value for torchvision's IMAGENET1K_V1 weights


class ResNetSpec(NamedTuple):
    """One ResNet depth: its torchvision constructor, weights enum and C3, C4, C5 widths."""

    build: Callable[..., ResNet]
    weights: type[WeightsEnum]
    stage_channels: tuple[int, int, int]  # output channels of layer2, layer3, layer4


RESNETS: dict[int, ResNetSpec] = {
    18: ResNetSpec(torchvision.models.resnet18, torchvision.models.ResNet18_Weights, (128, 256, 512)),
    34: ResNetSpec(torchvision.models.resnet34, torchvision.models.ResNet34_Weights, (128, 256, 512)),
    50: ResNetSpec(torchvision.models.resnet50, torchvision.models.ResNet50_Weights, (512, 1024, 2048)),
    101: ResNetSpec(torchvision.models.resnet101, torchvision.models.ResNet101_Weights, (512, 1024, 2048)),
}


class PretrainedWeightsError(ConfigError):
    """ImageNet weights could not be had; the message is one line naming the ways out.

    A ConfigError because the way out is a config value: the command-line
    entry points print it as one line, like a bad value.
    """


def build_resnet(depth: int, *, frozen_bn: bool, pretrained: Optional[str]) -> ResNet:
    """torchvision ResNet-`depth`, optionally with ImageNet weights and frozen BN.

    `pretrained`: None, "imagenet" (torchvision's IMAGENET1K_V1, from
    $TORCH_HOME/hub/checkpoints or downloaded there on first use) or a path
    to a ResNet state dict.
    """
    spec = RESNETS[depth]
    norm_layer = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    resnet = spec.build(weights=None, norm_layer=norm_layer)
    if pretrained == IMAGENET:
        state = imagenet_state_dict(spec.weights.IMAGENET1K_V1, depth)
        resnet.load_state_dict(state)
    elif pretrained is not None:
        _load_state_dict(resnet, Path(pretrained).expanduser())
    return resnet


def imagenet_state_dict(weights: WeightsEnum, depth: int) -> dict[str, torch.Tensor]:
    """torchvision's cached or downloaded state dict; a failure is one PretrainedWeightsError line."""
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as error:  # URLError, timeouts, refused connections, a bad hash
        cause = " ".join(str(getattr(error, "reason", None) or error).split())  # one line
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise PretrainedWeightsError(
            f"model.pretrained=imagenet: the ResNet-{depth} ImageNet weights could not be downloaded "
            f"({type(error).__name__}: {cause}); either train from scratch with model.pretrained=null "
            f"model.frozen_bn=false, or use a local file: model.pretrained=/path/to/resnet{depth}_state_dict.pth, "
            f"or torchvision's file {cached.name} placed at {cached} (the directory follows TORCH_HOME)"
        ) from None


def _load_state_dict(resnet: nn.Module, path: Path) -> None:
    """Load a ResNet state dict from `path`; the classifier (fc) may be absent."""
    if not path.is_file():
        raise FileNotFoundError(f"model.pretrained={path} is not a file (expected a ResNet state dict)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = resnet.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(f"{path}: not a ResNet state dict (missing {missing[:3]}, unexpected {unexpected[:3]})")


def _freeze_stem(resnet: nn.Module) -> None:
    """Freeze conv1 and res2 (layer1), as Detectron does with ImageNet weights."""
    for module in (resnet.conv1, resnet.bn1, resnet.layer1):
        for parameter in module.parameters():
            parameter.requires_grad_(False)


def build_backbone(cfg: ModelConfig) -> BackboneWithFPN:
    """ResNet-FPN returning an OrderedDict of 5 maps P3..P7, `cfg.fpn_channels` each.

    Input (N, 3, H, W) normalised; output strides 8, 16, 32, 64, 128.
    """
    resnet = build_resnet(cfg.depth, frozen_bn=cfg.frozen_bn, pretrained=cfg.pretrained)
    if cfg.pretrained is not None:
        _freeze_stem(resnet)
    c3, c4, c5 = RESNETS[cfg.depth].stage_channels
    extra = LastLevelP6P7(c5, cfg.fpn_channels)
    # torchvision takes P6 from P5 when C5 and P5 have equal widths; the paper
    # always takes it from C5, so force that for every width.
    extra.use_P5 = False
    return BackboneWithFPN(
        resnet,
        return_layers={"layer2": "p3", "layer3": "p4", "layer4": "p5"},
        in_channels_list=[c3, c4, c5],
        out_channels=cfg.fpn_channels,
        extra_blocks=extra,
    )
