"""The quiet speed figure: median pass and relative spread."""

from __future__ import annotations

import pytest

from detector.speed import Speed


def test_median_and_spread_of_timing_passes():
    speed = Speed((10.0, 12.0, 11.0, 10.5, 30.0))
    assert speed.median == 11.0
    assert speed.spread == pytest.approx((30.0 - 10.0) / 11.0)
