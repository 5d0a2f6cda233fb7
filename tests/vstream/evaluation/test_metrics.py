"""Metric values for hand-computed cases: a miss, a false alarm, a split event, a late alert."""

from __future__ import annotations

import pytest

from vstream.evaluation.dataset import GtEvent, GtSegment
from vstream.evaluation.metrics import (
    Counts,
    PredEvent,
    alert_latencies,
    boundary_errors,
    label_counts,
    match,
    segment_tious,
    tiou,
)
from vstream.evaluation.report import PredSegment, VideoRun, build_report


def gt(label: str, start: float, end: float) -> GtEvent:
    return GtEvent(label=label, start=start, end=end)


def pred(label: str, start: float, end: float, opened_at: float | None = None) -> PredEvent:
    return PredEvent(label=label, start=start, end=end, opened_at=end if opened_at is None else opened_at)


def test_tiou_of_overlapping_disjoint_and_identical_spans() -> None:
    assert tiou(gt("a", 0, 10), pred("a", 5, 15)) == pytest.approx(5 / 15)
    assert tiou(gt("a", 0, 10), pred("a", 10, 20)) == 0.0
    assert tiou(gt("a", 3, 3), pred("a", 3, 3)) == 1.0
    assert tiou(gt("a", 3, 3), pred("a", 4, 4)) == 0.0


def test_greedy_matching_takes_the_best_iou_first_and_each_event_once() -> None:
    # prediction 0 overlaps both ground-truth events; it goes to the one it fits best (IoU 0.8),
    # so ground truth 0 is left to prediction 1
    truth = [gt("a", 0, 10), gt("a", 8, 18)]
    preds = [pred("a", 8, 16), pred("a", 0, 7)]
    matches = match(truth, preds, 0.3)
    assert [(m.gt, m.pred) for m in matches] == [(0, 1), (1, 0)]
    assert [m.iou for m in matches] == [0.7, 0.8]


def test_a_miss_is_a_false_negative_and_a_false_alarm_a_false_positive() -> None:
    truth = [gt("fall", 10, 20), gt("fall", 40, 50)]
    preds = [pred("fall", 11, 20), pred("fall", 70, 75), pred("fire", 5, 6)]
    counts = label_counts(truth, preds, 0.5)
    assert counts == {"fall": Counts(tp=1, fp=1, fn=1), "fire": Counts(tp=0, fp=1, fn=0)}
    assert (counts["fall"].precision, counts["fall"].recall, counts["fall"].f1) == (0.5, 0.5, 0.5)
    assert (counts["fire"].precision, counts["fire"].recall, counts["fire"].f1) == (0.0, 0.0, 0.0)


def test_a_split_event_gives_one_hit_and_one_false_alarm_or_a_miss_and_two() -> None:
    truth = [gt("intrusion", 0, 20)]
    preds = [pred("intrusion", 0, 5), pred("intrusion", 8, 20)]  # IoU 0.25 and 0.6
    assert label_counts(truth, preds, 0.3) == {"intrusion": Counts(tp=1, fp=1, fn=0)}
    assert label_counts(truth, preds, 0.7) == {"intrusion": Counts(tp=0, fp=2, fn=1)}


def test_alert_latency_is_the_first_open_of_an_overlapping_alert_minus_the_start() -> None:
    truth = [gt("stop", 20, 30), gt("stop", 50, 60), gt("fall", 5, 8)]
    preds = [
        pred("stop", 26, 30, opened_at=32.0),  # late: seen from 26 s, alerted when that clip ended
        pred("stop", 21, 24, opened_at=26.0),  # a piece of the same event, alerted earlier: that counts
        pred("fall", 50, 52, opened_at=56.0),  # another label: does not alert the stop at 50 s
    ]
    assert alert_latencies(truth, preds) == [6.0, None, None]


def test_boundary_errors_use_pairs_matched_at_iou_half() -> None:
    truth = [gt("a", 10, 20), gt("a", 40, 50)]
    preds = [pred("a", 12, 19), pred("a", 46, 55)]  # IoU 0.7 and 4/15 (unmatched at 0.5)
    assert boundary_errors(truth, preds) == [(2.0, 1.0)]


def test_segment_tiou_is_each_truth_segments_best_overlap() -> None:
    truth = [GtSegment(start=0, end=10), GtSegment(start=10, end=30)]
    preds = [PredSegment(start=0, end=12), PredSegment(start=12, end=30)]
    assert segment_tious(truth, preds) == pytest.approx([10 / 12, 18 / 20])
    assert segment_tious(truth, []) == [0.0, 0.0]


def test_report_sums_counts_over_videos_and_labels() -> None:
    one = VideoRun(
        id="a",
        video="a.mp4",
        duration=60.0,
        clips=10,
        parse_failures=1,
        model_seconds=3.0,
        gt_events=[gt("fall", 10, 20)],
        events=[pred("fall", 10, 20, opened_at=22.0), pred("fire", 30, 31, opened_at=32.0)],
    )
    two = VideoRun(
        id="b", video="b.mp4", duration=60.0, clips=10, model_seconds=1.0, gt_events=[gt("fire", 0, 10)]
    )
    r = build_report([one, two], dataset="d", model_id="m", tasks=["events"])
    at_half = {s.label: s for s in r.scores if s.iou == 0.5}
    assert (at_half["(all)"].tp, at_half["(all)"].fp, at_half["(all)"].fn) == (1, 1, 1)
    assert at_half["fire"].f1 == 0.0 and at_half["fall"].f1 == 1.0
    assert r.macro_f1["0.5"] == 0.5
    assert r.parse_failure_rate == 0.05
    assert r.model_seconds_per_video_minute == 2.0  # 4 model seconds over 2 video minutes
    assert (r.alert_latency_s.n, r.alert_latency_s.mean, r.alerts_missed) == (1, 12.0, 1)
