"""``vstream analyze``'s readable output shows what the model said about each clip, briefly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.media_fixtures import sample
from vstream.analysis.analyzer import Analysis
from vstream.analysis.records import CaptionRecord, ClipResult, SegmentRecord
from vstream.cli import main
from vstream.cli_analyze import result_lines
from vstream.schema import ClipMessage, ClipParams


def scripted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, outputs: dict[str, object]) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"outputs": outputs}))
    monkeypatch.setenv("VSTREAM_MODEL__TYPE", "scripted")
    monkeypatch.setenv("VSTREAM_MODEL__MODEL", str(script))


def analyze(capsys: pytest.CaptureFixture[str], video: Path, *extra: str) -> list[str]:
    rc = main(["analyze", str(video), "--fps", "1", "--clip-seconds", "2", "--overlap", "0", *extra])
    assert rc == 0
    return capsys.readouterr().out.splitlines()


def test_caption_task_shows_each_clips_caption(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scripted(monkeypatch, tmp_path, {"caption": '{"caption": "A red ball rolls, clip {index}."}'})
    out = analyze(capsys, sample(tmp_path, seconds=4, width=320, height=180), "--task", "caption")
    clip_lines = [line for line in out if not line.startswith(" ")]
    assert len(clip_lines) == 2 and all(line.endswith(" ok") for line in clip_lines)
    assert "  caption 'A red ball rolls, clip 0.'" in out
    assert "  caption 'A red ball rolls, clip 1.'" in out


def test_segments_task_shows_each_clips_segments(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    answer = '[{"start": 0, "end": 1, "title": "Intro", "description": "A title card."}]'
    scripted(monkeypatch, tmp_path, {"segments": answer, "text": "Summary {n}."})
    out = analyze(capsys, sample(tmp_path, seconds=4, width=320, height=180), "--task", "segments")
    assert "  segment 0.0-1.0s 'Intro: A title card.'" in out
    assert "  segment 2.0-3.0s 'Intro: A title card.'" in out


def _analysis(caption: str | None = None, n_segments: int = 0) -> Analysis:
    params = ClipParams(fps=1, clip_seconds=2, overlap_seconds=0)
    clip = ClipMessage(
        stream_id="s",
        clip_id="s-x-0000000",
        index=0,
        params=params,
        t_start=0,
        t_end=2,
        timestamps=[0, 1],
        clock="pts",
        width=28,
        height=28,
        frames=[b"a", b"b"],
    )
    segments = [
        SegmentRecord(segment_id=f"s{k}", stream_id="s", start=k, end=k + 1, title=f"part {k}")
        for k in range(n_segments)
    ]
    result = ClipResult(
        stream_id="s",
        clip_id=clip.clip_id,
        index=0,
        task="segments" if n_segments else "caption",
        model_id="m",
        prompt_hash="p",
        thinking=False,
        t_start=0,
        t_end=2,
        ok=True,
        segments=segments,
        caption=CaptionRecord(stream_id="s", clip_id=clip.clip_id, start=0, end=2, text=caption)
        if caption
        else None,
    )
    return Analysis(clip, result=result)


def test_long_captions_are_cut_to_one_short_line() -> None:
    (line,) = result_lines(_analysis(caption="word\nword " * 40))
    assert "\n" not in line and line.endswith("…'")
    assert len(line) <= len("caption ''") + 100


def test_many_segments_are_cut_with_a_count_of_the_rest() -> None:
    lines = result_lines(_analysis(n_segments=8))
    assert lines[:5] == [f"segment {k}.0-{k + 1}.0s 'part {k}'" for k in range(5)]
    assert lines[5] == "... and 3 more segments (--json shows all)"
    assert len(lines) == 6


def test_a_clip_without_a_result_shows_nothing_more() -> None:
    a = _analysis(caption="x")
    assert result_lines(Analysis(a.clip, error="backend failed")) == []
