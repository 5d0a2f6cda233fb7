"""The three dataset formats: vstream's JSONL, ActivityNet Captions JSON and Charades-STA lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vstream.evaluation.dataset import DatasetError, load_dataset


def test_jsonl_rows_with_relative_paths_urls_and_default_ids(tmp_path: Path) -> None:
    rows = [
        {
            "video": "clips/a.mp4",
            "events": [{"label": "person falls", "start": 3, "end": 6.5}],
            "duration": 30,
        },
        {"video": "https://example.com/v/b.mp4?sig=1", "id": "b", "segments": [{"start": 0, "end": 12}]},
    ]
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    a, b = load_dataset(path)
    assert (a.id, a.video, a.duration) == ("a", str(tmp_path / "clips" / "a.mp4"), 30.0)
    assert [(e.label, e.start, e.end) for e in a.events] == [("person falls", 3.0, 6.5)]
    assert (b.id, b.video) == ("b", "https://example.com/v/b.mp4?sig=1")
    assert [(s.start, s.end) for s in b.segments] == [(0.0, 12.0)]


def test_activitynet_captions_become_segments_and_captions(tmp_path: Path) -> None:
    data = {
        "v_QOlSCBRmfWY": {
            "duration": 82.73,
            "timestamps": [[0.83, 19.86], [17.37, 60.81], [56.26, 85.0]],
            "sentences": ["A young woman is seen standing.", " She then begins to dance.", "She ends."],
        }
    }
    path = tmp_path / "val_1.json"
    path.write_text(json.dumps(data))
    (item,) = load_dataset(path, video_root=tmp_path / "videos")
    assert item.id == "v_QOlSCBRmfWY" and item.video == str(tmp_path / "videos" / "v_QOlSCBRmfWY.mp4")
    assert [(s.start, s.end, s.title) for s in item.segments] == [
        (0.83, 19.86, "A young woman is seen standing."),
        (17.37, 60.81, "She then begins to dance."),
        (56.26, 82.73, "She ends."),  # clamped to the duration
    ]
    assert [c.text for c in item.captions][1] == "She then begins to dance."
    assert item.events == []


def test_charades_sta_lines_group_by_video_and_become_events(tmp_path: Path) -> None:
    path = tmp_path / "charades_sta_test.txt"
    path.write_text(
        "3MSZA 24.3 30.4##person turn a light on.\n"
        "3MSZA 0.0 6.9##person opening a door.\n"
        "\n"
        "AO8RW 12.5 0.0##a person is putting a book on a shelf.\n"
    )
    first, second = load_dataset(path, video_ext=".webm")
    assert first.id == "3MSZA" and first.video == str(tmp_path / "3MSZA.webm")
    assert [(e.label, e.start, e.end) for e in first.events] == [
        ("person turn a light on", 24.3, 30.4),
        ("person opening a door", 0.0, 6.9),
    ]
    assert [(e.start, e.end) for e in second.events] == [(0.0, 12.5)]  # reversed stamps reordered


@pytest.mark.parametrize(
    ("name", "text", "fmt", "message"),
    [
        (
            "bad.jsonl",
            '{"video": "a.mp4"}\n{"events": []}\n',
            "auto",
            "bad.jsonl:2: each line must be an object",
        ),
        (
            "bad.jsonl",
            '{"video": "a.mp4", "events": [{"label": "x", "start": 5, "end": 2}]}\n',
            "auto",
            "end (2.0) is before start (5.0)",
        ),
        (
            "bad.txt",
            "3MSZA 24.3##person sits.\n",
            "charades",
            "bad.txt:1: expected 'video_id start end##sentence'",
        ),
        (
            "bad.json",
            '{"v1": {"duration": 5, "timestamps": [[0, 1]], "sentences": []}}',
            "activitynet",
            "1 timestamps but 0 sentences",
        ),
        ("dup.jsonl", '{"video": "a.mp4"}\n{"video": "x/a.mp4"}\n', "auto", "video ids appear twice: a"),
        ("empty.jsonl", "\n", "auto", "holds no videos"),
    ],
)
def test_bad_annotation_files_get_one_clear_line(
    tmp_path: Path, name: str, text: str, fmt: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DatasetError) as err:
        load_dataset(path, fmt=fmt)  # type: ignore[arg-type]
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"cannot read dataset .*nope\.jsonl"):
        load_dataset(tmp_path / "nope.jsonl")
