"""Anchors: exact values of a tiny case, order, counts, feature-map sizes."""

import math

import pytest
import torch
import torch.nn.functional as F

from detector.anchors import AnchorGenerator, feature_map_sizes

A = 16 * math.sqrt(2)  # half of the long side of a 1:2 or 2:1 anchor of area 32^2 (sqrt(2048) / 2)
B = 8 * math.sqrt(2)  # half of its short side (sqrt(512) / 2)


def tiny(offset: float = 0.0) -> AnchorGenerator:
    return AnchorGenerator(sizes=[32.0], scales_per_octave=1, aspect_ratios=[0.5, 1.0, 2.0], strides=[8], offset=offset)


def test_cell_anchors_are_centred_and_ratio_major():
    expected = torch.tensor([
        [-A, -B, A, B],  # ratio h/w = 0.5: wide
        [-16.0, -16.0, 16.0, 16.0],  # ratio 1
        [-B, -A, B, A],  # ratio 2: tall
    ], dtype=torch.float64)
    torch.testing.assert_close(tiny().cell_anchors(0), expected)


def test_grid_anchors_of_a_2x2_map_written_out():
    anchors = tiny().grid_anchors([(2, 2)], dtype=torch.float64)
    expected = torch.tensor([
        # location (y=0, x=0): centre (0, 0)
        [-A, -B, A, B], [-16, -16, 16, 16], [-B, -A, B, A],
        # (y=0, x=1): centre (8, 0)
        [8 - A, -B, 8 + A, B], [-8, -16, 24, 16], [8 - B, -A, 8 + B, A],
        # (y=1, x=0): centre (0, 8)
        [-A, 8 - B, A, 8 + B], [-16, -8, 16, 24], [-B, 8 - A, B, 8 + A],
        # (y=1, x=1): centre (8, 8)
        [8 - A, 8 - B, 8 + A, 8 + B], [-8, -8, 24, 24], [8 - B, 8 - A, 8 + B, 8 + A],
    ], dtype=torch.float64)
    torch.testing.assert_close(anchors, expected)


def test_offset_moves_the_centres():
    anchors = tiny(offset=0.5).grid_anchors([(1, 2)])
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    torch.testing.assert_close(centres, torch.tensor([[4.0, 4.0]] * 3 + [[12.0, 4.0]] * 3))
    assert anchors.dtype == torch.float32


def test_scale_index_is_the_fast_one_and_not_rounded():
    gen = AnchorGenerator(sizes=[32.0], scales_per_octave=2, aspect_ratios=[1.0, 2.0], strides=[8])
    cell = gen.cell_anchors(0)
    widths, heights = cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]
    side = 32 * 2 ** 0.5
    torch.testing.assert_close(widths * heights, torch.tensor([32.0 ** 2, side ** 2] * 2, dtype=torch.float64))
    torch.testing.assert_close(heights / widths, torch.tensor([1.0, 1.0, 2.0, 2.0], dtype=torch.float64))
    assert widths[1].item() == pytest.approx(45.254833995939045)  # not rounded to 45


def test_levels_are_concatenated_level_major():
    gen = AnchorGenerator(sizes=[32.0, 64.0], scales_per_octave=1, aspect_ratios=[1.0], strides=[8, 16])
    anchors = gen.grid_anchors([(2, 3), (1, 2)])
    assert anchors.shape == (6 + 2, 4)
    torch.testing.assert_close(anchors[5], torch.tensor([0.0, -8.0, 32.0, 24.0]))  # P3 (y=1, x=2): centre (16, 8)
    torch.testing.assert_close(anchors[7], torch.tensor([-16.0, -32.0, 48.0, 32.0]))  # P4 (y=0, x=1): centre (16, 0)


def test_feature_map_sizes_of_800():
    assert feature_map_sizes(800, 800) == [(100, 100), (50, 50), (25, 25), (13, 13), (7, 7)]


@pytest.mark.parametrize("height, width", [(800, 800), (97, 130), (600, 1000)])
def test_feature_map_sizes_match_the_strided_layers(height, width):
    x = torch.zeros(1, 1, height, width)
    x = F.conv2d(x, torch.zeros(1, 1, 7, 7), stride=2, padding=3)  # ResNet conv1
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    sizes = []
    for _ in range(5):  # C3, C4, C5 (stride-2 3x3), then the P6 and P7 convs
        x = F.conv2d(x, torch.zeros(1, 1, 3, 3), stride=2, padding=1)
        sizes.append(tuple(x.shape[-2:]))
    assert feature_map_sizes(height, width) == sizes


def test_anchor_count_of_an_800_image():
    gen = AnchorGenerator(sizes=[32.0, 64.0, 128.0, 256.0, 512.0], scales_per_octave=3, aspect_ratios=[0.5, 1.0, 2.0])
    anchors = gen.grid_anchors(feature_map_sizes(800, 800))
    assert gen.num_anchors_per_location == 9
    assert anchors.shape == (120087, 4)  # 9 * (100^2 + 50^2 + 25^2 + 13^2 + 7^2)


@pytest.mark.parametrize("scales", [1, 2, 3, 4])
@pytest.mark.parametrize("ratios", [[1.0], [0.5, 1.0, 2.0]])
def test_num_anchors_per_location(scales, ratios):
    gen = AnchorGenerator(sizes=[32.0] * 5, scales_per_octave=scales, aspect_ratios=ratios)
    assert gen.num_anchors_per_location == scales * len(ratios)
    assert gen.cell_anchors(4).shape == (scales * len(ratios), 4)


def test_rejects_mismatched_levels():
    with pytest.raises(ValueError, match="one anchor size per level"):
        AnchorGenerator(sizes=[32.0], scales_per_octave=1, aspect_ratios=[1.0])
