"""Fixtures of the video tests: a small moving, noisy scene (BGR frames) and its RGB twin."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from bench.video_measure import MovingScene

Image = npt.NDArray[np.uint8]


@pytest.fixture(scope="session")
def small_frames() -> list[Image]:
    """120 BGR frames of 320x180 (4 s at 30 fps)."""
    scene = MovingScene(320, 180, noise_bank=8)
    return [scene.frame(i) for i in range(120)]


def psnr(a: Image, b: Image) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 99.0 if mse == 0 else 10 * float(np.log10(255.0**2 / mse))
