"""Box coder: a hand-computed delta, round trip, clamping."""

import math

import torch

from detector.box_coder import BoxCoder


def test_hand_computed_delta():
    anchor = torch.tensor([[0.0, 0.0, 10.0, 10.0]])  # centre (5, 5), 10 x 10
    box = torch.tensor([[2.0, 4.0, 22.0, 14.0]])  # centre (12, 9), 20 x 10
    expected = torch.tensor([[0.7, 0.4, math.log(2.0), 0.0]])
    torch.testing.assert_close(BoxCoder().encode(anchor, box), expected)
    weighted = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)).encode(anchor, box)
    torch.testing.assert_close(weighted, torch.tensor([[7.0, 4.0, 5 * math.log(2.0), 0.0]]))


def random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * 100
    wh = torch.rand(n, 2, generator=generator) * 50 + 1
    return torch.cat([xy, xy + wh], dim=1)


def test_round_trip():
    g = torch.Generator().manual_seed(0)
    anchors, boxes = random_boxes(50, g), random_boxes(50, g)
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        coder = BoxCoder(weights=weights)
        torch.testing.assert_close(coder.decode(anchors, coder.encode(anchors, boxes)), boxes, rtol=1e-5, atol=1e-4)


def test_decode_broadcasts_over_a_batch():
    g = torch.Generator().manual_seed(1)
    anchors = random_boxes(7, g)
    deltas = torch.randn(3, 7, 4, generator=g) * 0.1
    decoded = BoxCoder().decode(anchors, deltas)
    assert decoded.shape == (3, 7, 4)
    torch.testing.assert_close(decoded[2], BoxCoder().decode(anchors, deltas[2]))


def test_decode_clamps_huge_scales():
    anchor = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    boxes = BoxCoder().decode(anchor, torch.tensor([[0.0, 0.0, 100.0, 100.0]]))
    assert torch.isfinite(boxes).all()
    torch.testing.assert_close(boxes[0, 2] - boxes[0, 0], torch.tensor(1000.0))  # 16 * exp(log(1000 / 16))
