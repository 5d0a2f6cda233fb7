"""run_ingest over real decoded sources: where a resumed job starts, and what its clips' times are."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.media_fixtures import sample
from vstream.config import DecodeSettings
from vstream.ingest import open_for, run_ingest
from vstream.schema import ClipMessage, ClipParams, IngestRequest

PARAMS = ClipParams(fps=2, clip_seconds=2, overlap_seconds=1)  # windows every 1 s


class Collect:
    def __init__(self) -> None:
        self.clips: list[ClipMessage] = []

    def send(self, msg: ClipMessage) -> None:
        self.clips.append(msg)


@pytest.mark.parametrize("realtime", [False, True])
def test_a_resumed_file_job_continues_at_the_right_window_and_media_time(
    tmp_path: Path, realtime: bool
) -> None:
    video = sample(tmp_path, "v.mp4", seconds=6, width=320, height=180)
    req = IngestRequest(job_id="j", stream_id="v", source=str(video), params=PARAMS, realtime=realtime)
    whole, resumed = Collect(), Collect()
    run_ingest(req, open_for(req, DecodeSettings()), whole)
    run_ingest(req, open_for(req, DecodeSettings(), start_index=2), resumed, start_index=2)
    later = [c for c in whole.clips if c.index >= 2]
    assert [c.index for c in resumed.clips] == [c.index for c in later] == [2, 3, 4]
    # the same windows with the same media times: nothing skipped, nothing shifted
    assert [c.timestamps for c in resumed.clips] == [c.timestamps for c in later]
    assert resumed.clips[0].t_start == pytest.approx(2.0)


def test_a_clip_after_a_gap_is_schema_version_2_and_others_stay_version_1() -> None:
    import numpy as np

    from vstream.clipper import cut
    from vstream.ingest import build_message
    from vstream.media.frames import Frame, Gap, SourceInfo
    from vstream.schema import decode_clip, encode_clip

    img = np.zeros((56, 84, 3), np.uint8)
    frames = [Frame(img, i / 2, wall=1000 + i / 2) for i in range(8)]
    frames += [Frame(img, 12 + i / 2, wall=1012 + i / 2, gap=Gap("reconnect", 8.0, restart=True)) if i == 0
               else Frame(img, 12 + i / 2, wall=1012 + i / 2) for i in range(8)]  # fmt: skip
    info = SourceInfo(84, 56, 84, 56, 25.0, None, "h264", live=True)
    req = IngestRequest(job_id="g", stream_id="cam", source="rtsp://u:p@cam/x", params=PARAMS)
    msgs = [build_message(c, req, info, 85) for c in cut(frames, PARAMS)]
    marked = [m for m in msgs if m.gap is not None]
    assert len(marked) == 1 and marked[0].schema_version == 2 and marked[0].gap.reason == "reconnect"  # type: ignore[union-attr]
    assert marked[0].timestamps[0] == 12.0 and marked[0].gap.t_before == 3.5  # type: ignore[union-attr]
    assert {m.schema_version for m in msgs if m.gap is None} == {1}
    assert decode_clip(encode_clip(marked[0])) == marked[0]
    assert all(m.source == "rtsp://cam/x" for m in msgs)
    assert (marked[0].width, marked[0].height) == (84, 56)
