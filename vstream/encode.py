"""JPEG encoding of clip frames (libjpeg-turbo through simplejpeg: ~2x Pillow's speed)."""

from __future__ import annotations

import numpy as np
import simplejpeg


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    return bytes(
        simplejpeg.encode_jpeg(
            np.ascontiguousarray(image), quality=quality, colorspace="RGB", colorsubsampling="420"
        )
    )


def decode_jpeg(data: bytes) -> np.ndarray:
    """RGB uint8 H x W x 3; raises ValueError on corrupt data."""
    try:
        image: np.ndarray = simplejpeg.decode_jpeg(data, colorspace="RGB")
        return image
    except Exception as exc:  # simplejpeg raises plain ValueError/RuntimeError depending on the damage
        raise ValueError(f"corrupt JPEG frame: {exc}") from exc
