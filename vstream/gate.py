"""Motion gate: skip clips in which nothing changes, judged on tiny grey thumbnails (microseconds a frame)."""

from __future__ import annotations

import itertools

import numpy as np

from vstream.clipper import Clip
from vstream.schema import GateParams

_THUMB = 32  # columns of the thumbnail; rows follow the aspect ratio


def thumbnail(image: np.ndarray) -> np.ndarray:
    w = image.shape[1]
    step = max(1, w // _THUMB)
    small: np.ndarray = image[::step, ::step].mean(axis=2, dtype=np.float32)
    return small


class MotionGate:
    """Passes a clip when any consecutive pair of its frames (or its first frame against the last passed
    frame) differs by more than ``threshold`` mean grey levels."""

    def __init__(self, params: GateParams) -> None:
        self.params = params
        self._last: np.ndarray | None = None
        self.skipped = 0

    def passes(self, clip: Clip) -> bool:
        # The final clip always goes: it tells the infer worker the source ended (open events close, the
        # lecture summary is finalised), still or not; so does the first after a gap, which records it.
        if not self.params.enabled or clip.last or clip.gap is not None:
            return True
        thumbs = [thumbnail(f.image) for f in clip.frames]
        if self._last is not None and self._last.shape == thumbs[0].shape:
            thumbs.insert(0, self._last)
        moving = any(
            float(np.abs(a - b).mean()) > self.params.threshold for a, b in itertools.pairwise(thumbs)
        )
        if moving:
            self._last = thumbs[-1]
            return True
        self.skipped += 1
        return False
