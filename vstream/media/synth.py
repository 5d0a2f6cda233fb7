"""Synthetic H.264 test videos whose frames carry their own index as a barcode.

The top band of every frame holds 16 black/white cells encoding the frame number, so a test can read
back exactly which source frame a decoder returned, even after resizing and JPEG.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BARCODE_BITS = 16


def _frame_image(i: int, width: int, height: int, fps: float, still: bool) -> np.ndarray:
    img = np.empty((height, width, 3), np.uint8)
    t = 0.0 if still else i / fps
    ramp = np.linspace(0, 160, width, dtype=np.float32)
    img[:] = ((ramp[None, :, None] + t * 20) % 160 + 40).astype(np.uint8)
    band = max(height // 8, 8)
    cell = width // BARCODE_BITS
    for bit in range(BARCODE_BITS):
        on = (i >> (BARCODE_BITS - 1 - bit)) & 1
        img[:band, bit * cell : (bit + 1) * cell] = 255 if on else 0
    if not still:  # a moving square gives the motion gate something to see
        side = max(height // 5, 4)
        x = int((t * width / 6) % max(width - side, 1))
        img[height // 2 : height // 2 + side, x : x + side] = (220, 30, 30)
    return img


def read_barcode(frame: np.ndarray) -> int:
    """Recover the frame index written by :func:`make_sample_video` (any resize of the frame)."""
    h, w = frame.shape[:2]
    band = max(h // 8, 2)
    grey = frame[: band // 2 + 1].mean(axis=2) if frame.ndim == 3 else frame[: band // 2 + 1]
    value = 0
    for bit in range(BARCODE_BITS):
        x0, x1 = bit * w // BARCODE_BITS, (bit + 1) * w // BARCODE_BITS
        inner = grey[:, x0 + (x1 - x0) // 4 : x1 - (x1 - x0) // 4]
        value = (value << 1) | int(inner.mean() > 127)
    return value


def make_sample_video(
    path: str | Path,
    *,
    seconds: float = 10.0,
    fps: float = 30.0,
    width: int = 640,
    height: int = 360,
    gop: int = 60,
    bframes: int = 2,
    still: bool = False,
) -> Path:
    """Write an H.264 MP4 with a keyframe every ``gop`` frames and ``bframes`` B-frames."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = round(seconds * fps)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(gop), "bf": str(bframes), "preset": "veryfast", "crf": "23"}
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(_frame_image(i, width, height, fps, still), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
