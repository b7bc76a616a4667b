"""Synthetic 1280x720 test scene shared by every system under benchmark.

Owns the frame content only: a moving colour gradient, moving shapes, film
grain and the frame number drawn in the corner.  Tuned so that JPEG frames at
quality 70 weigh roughly 50-70 KB, like the seed's 720p model output.  Noise is
pre-rendered into a small bank and cycled, so rendering costs a few ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

WIDTH = 1280
HEIGHT = 720
FPS = 30.0
NOISE_BANK_SIZE = 6
NOISE_SIGMA = 5.0
NOISE_SEED = 20240917

Frame = npt.NDArray[np.uint8]


def _noise_bank(count: int, height: int, width: int) -> list[npt.NDArray[np.int16]]:
    rng = np.random.default_rng(NOISE_SEED)
    return [rng.normal(0.0, NOISE_SIGMA, size=(height, width, 3)).astype(np.int16) for _ in range(count)]


@dataclass
class SceneRenderer:
    """Renders frame ``n`` of the scene deterministically (BGR, uint8)."""

    width: int = WIDTH
    height: int = HEIGHT
    _noise: list[npt.NDArray[np.int16]] = field(init=False, repr=False)
    _xs: npt.NDArray[np.float32] = field(init=False, repr=False)
    _ys: npt.NDArray[np.float32] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._noise = _noise_bank(NOISE_BANK_SIZE, self.height, self.width)
        self._xs = np.linspace(0.0, 1.0, self.width, dtype=np.float32)[None, :]
        self._ys = np.linspace(0.0, 1.0, self.height, dtype=np.float32)[:, None]

    def render(self, frame_number: int) -> Frame:
        """Return the BGR image for ``frame_number``."""
        phase = frame_number / FPS
        base = self._gradient(phase)
        self._draw_shapes(base, phase)
        noisy = base.astype(np.int16) + self._noise[frame_number % len(self._noise)]
        frame: Frame = np.clip(noisy, 0, 255).astype(np.uint8)
        cv2.putText(
            frame,
            f"frame {frame_number}",
            (24, 64),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.6,
            (255, 255, 255),
            3,
            cv2.LINE_AA,
        )
        return frame

    def _gradient(self, phase: float) -> Frame:
        blue = 127.0 + 127.0 * np.sin(2.0 * np.pi * (self._xs + 0.10 * phase))
        green = 127.0 + 127.0 * np.sin(2.0 * np.pi * (self._ys * 1.5 - 0.07 * phase))
        red = 127.0 + 127.0 * np.cos(2.0 * np.pi * (self._xs + self._ys + 0.05 * phase))
        channels = [np.broadcast_to(c, (self.height, self.width)) for c in (blue, green, red)]
        return np.stack(channels, axis=-1).astype(np.uint8)

    def _draw_shapes(self, image: Frame, phase: float) -> None:
        for index in range(6):
            cx = int((0.5 + 0.4 * np.sin(phase * (0.6 + 0.15 * index) + index)) * self.width)
            cy = int((0.5 + 0.4 * np.cos(phase * (0.5 + 0.1 * index) + 2 * index)) * self.height)
            colour = (40 * index % 256, 255 - 30 * index, 80 + 25 * index)
            if index % 2 == 0:
                cv2.circle(image, (cx, cy), 50 + 12 * index, colour, -1, cv2.LINE_AA)
            else:
                half = 45 + 10 * index
                cv2.rectangle(image, (cx - half, cy - half), (cx + half, cy + half), colour, -1)


def encode_jpeg(frame: Frame, quality: int) -> bytes:
    """Encode ``frame`` as baseline JPEG with cv2 (releases the GIL)."""
    ok, buffer = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"cv2.imencode failed at quality {quality}")
    return bytes(buffer)
