"""decord decoding for files: decodes straight to the target size, so 1080p stays near 170 MB.

decord can hang in native code holding the GIL (dmlc/decord#373), so it only ever runs inside the
watched decode child process (vstream.media.child).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from vstream.media.frames import Frame, SourceError, sample_slots
from vstream.media.pyav_source import DecodeSpec, PyAVReader

_BATCH = 8


class DecordReader:
    def __init__(self, spec: DecodeSpec) -> None:
        import decord  # imported here: only the child process pays for it

        # PyAV probes size, rotation and codec; it decodes one frame only.
        probe = PyAVReader(DecodeSpec(spec.source, spec.fps, spec.max_side, skip="none"))
        info = probe.info
        probe.close()
        try:  # decord applies the display rotation itself: ask for the displayed size
            self.vr = decord.VideoReader(
                spec.source,
                ctx=decord.cpu(0),
                width=info.out_width,
                height=info.out_height,
                num_threads=spec.threads,
            )
        except decord.DECORDError as exc:
            raise SourceError(f"decord cannot read {spec.source}: {exc}") from exc
        self.spec = spec
        self.info = replace(info, backend="decord", skip_frame="none")
        if len(self.vr) == 0:
            raise SourceError(f"no decodable video frames in {spec.source}")

    def frames(self) -> Iterator[Frame]:
        spans = self.vr.get_frame_timestamp(np.arange(len(self.vr))).astype(float)
        times, end = spans[:, 0] - spans[0, 0], float(spans[-1, 1] - spans[0, 0])
        picks = list(sample_slots(times, self.spec.fps, self.spec.start, end))
        for i in range(0, len(picks), _BATCH):
            chunk = picks[i : i + _BATCH]
            batch = self.vr.get_batch([idx for idx, _ in chunk]).asnumpy()
            for (idx, slot), img in zip(chunk, batch, strict=True):
                yield Frame(img, round(float(times[idx]), 6), None, "pts", slot)

    def close(self) -> None:
        del self.vr
