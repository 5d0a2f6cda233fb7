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
