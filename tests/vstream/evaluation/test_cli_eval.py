"""``vstream eval`` end to end on the synthetic set: real videos through the real pipeline, the model's
answers scripted with planted faults (so the numbers are known by hand; they test the evaluation, not a
model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vstream.cli import main
from vstream.evaluation.report import build_report, load_report


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    assert main(["eval", "make-synthetic", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def report_path(synthetic: Path) -> Path:
    out = synthetic / "report.json"
    script = synthetic / "scripts" / "{video_id}.json"
    rc = main(
        [
            "eval",
            str(synthetic / "dataset.jsonl"),
            "--model",
            f"scripted:{script}",
            "--out",
            str(out),
            "--plot",
            str(synthetic / "plot.png"),
        ]
    )
    assert rc == 0
    return out


def test_make_synthetic_writes_videos_ground_truth_and_scripts(synthetic: Path) -> None:
    rows = [json.loads(line) for line in (synthetic / "dataset.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["syn-01", "syn-02", "syn-03"]
    for r in rows:
        assert (synthetic / r["video"]).stat().st_size > 1000
        script = json.loads((synthetic / "scripts" / f"{r['id']}.json").read_text())
        assert set(script["outputs"]) == {"events", "segments"}


def test_metrics_on_the_synthetic_set_are_the_hand_computed_ones(report_path: Path) -> None:
    r = load_report(report_path)
    assert (r.videos, r.clips, r.video_seconds, r.tasks) == (3, 36, 108.0, ["events", "segments"])
    assert r.model_id == "scripted:{video_id}.json"
    score = {(s.label, s.iou): (s.tp, s.fp, s.fn) for s in r.scores}
    # syn-02's intrusion (2-30 s) was reported as two pieces: IoU 0.25 and 0.39
    assert score[("person enters restricted area", 0.3)] == (1, 1, 0)
    assert score[("person enters restricted area", 0.5)] == (0, 2, 1)
    # one fall found (IoU 0.82), one missed (syn-02), one false alarm (syn-03)
    assert score[("person falls", 0.7)] == (1, 1, 1)
    # stops: IoU 7/12 (the late one) and 7/8
    assert score[("vehicle stops in bay", 0.5)] == (2, 0, 0)
    assert score[("vehicle stops in bay", 0.7)] == (1, 1, 1)
    assert score[("(all)", 0.3)] == (4, 2, 1)
    assert r.macro_f1 == {
        "0.3": pytest.approx(0.722222, abs=1e-6),
        "0.5": 0.5,
        "0.7": pytest.approx(1 / 3, abs=1e-6),
    }
    # alerts open when the clip that saw them ends: 8-4, 26-18 (late), 8-2, 14-10; syn-02's fall never alerts
    assert (r.alert_latency_s.n, r.alert_latency_s.mean, r.alert_latency_s.max, r.alerts_missed) == (
        4,
        5.5,
        8.0,
        1,
    )
    # matched at IoU 0.5: fall +0.5/+0.5, stop +5/0, stop +1/0
    assert r.start_error_s.mean == pytest.approx(6.5 / 3, abs=1e-6)
    assert r.end_error_s.mean == pytest.approx(0.5 / 3, abs=1e-6)
    assert (r.parse_failures, r.parse_failure_rate) == (1, round(1 / 36, 6))  # syn-03's first answer is prose
    expected_tiou = [18 / 20, 16 / 18, 27 / 30, 6 / 9, 10 / 11, 7 / 8, 1.0]
    assert r.segment_tiou.n == 7 and r.segment_tiou.mean == pytest.approx(sum(expected_tiou) / 7, abs=1e-6)
    assert r.model_seconds > 0  # both figures below are rounded to 6 places
    assert r.model_seconds_per_video_minute == pytest.approx(r.model_seconds / 1.8, abs=1e-6)


def test_the_plot_is_a_png(report_path: Path) -> None:
    assert (report_path.parent / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_table_and_json_outputs(report_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = load_report(report_path)
    assert main(["eval", "--compare", str(report_path), str(report_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(
        line.split()[:4] == ["F1", "@0.5", "(all)", "0.545"] and line.split()[-1] == "+0.000"
        for line in lines
    )
    b = build_report(r.runs[:1], dataset=r.dataset, model_id="other", tasks=r.tasks)
    other = report_path.parent / "b.json"
    other.write_text(b.model_dump_json())
    assert main(["eval", "--compare", str(report_path), str(other), "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    diff = json.loads(out[-1])
    assert diff["alerts missed"] == {"a": 1.0, "b": 0.0, "delta": -1.0}
    assert diff["F1 @0.3 (all)"]["b"] == 1.0  # syn-01 alone: both events found at IoU 0.3


def test_bad_dataset_and_usage_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["eval"]) == 2
    assert main(["eval", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in err] == ["vstream"] * 3
    assert (
        "cannot read dataset" in err[0]
        and "usage: vstream eval" in err[1]
        and "not a vstream eval report" in err[2]
    )


def test_a_video_that_cannot_be_read_is_reported_and_its_events_missed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = tmp_path / "set.jsonl"
    dataset.write_text(
        json.dumps({"video": "gone.mp4", "events": [{"label": "fire", "start": 1, "end": 2}]}) + "\n"
    )
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"outputs": {"events": "[]"}}))
    assert main(["eval", str(dataset), "--model", f"scripted:{script}", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["runs"][0]["error"] and "gone.mp4" in r["runs"][0]["error"]
    assert [(s["label"], s["fn"]) for s in r["scores"] if s["iou"] == 0.5] == [("fire", 1), ("(all)", 1)]
