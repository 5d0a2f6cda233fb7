"""Evaluation metrics, as pure functions of ground truth and predictions (media seconds).

Definitions (also in the README):

* **Temporal IoU** of two spans: length of their intersection / length of their union; two identical
  zero-length spans have IoU 1, otherwise a zero union gives 0.
* **Event matching** is per video and per label, one-to-one and greedy by IoU: every (ground truth,
  prediction) pair with IoU >= the threshold is a candidate; candidates are taken in order of decreasing
  IoU (ties: earlier ground truth, then earlier prediction), each ground-truth event and each prediction at
  most once. A matched prediction is a true positive, an unmatched prediction a false positive (so a split
  event gives one TP and one FP, or two FPs and a miss when neither piece reaches the threshold), an
  unmatched ground-truth event a false negative.
* precision = TP / predictions (0 with no predictions), recall = TP / ground truth (0 with none),
  F1 = 2PR / (P + R) (0 when P + R = 0). ``overall`` sums TP/FP/FN over labels (micro average);
  ``macro_f1`` is the mean of the per-label F1.
* **Start/end error**: mean absolute difference of start (end) times over the pairs matched at IoU 0.5.
* **Segment tIoU**: for each ground-truth segment the best IoU with any predicted segment, averaged.
* **Alert latency** of a ground-truth event: the earliest stream time at which an ``open`` was emitted for
  a prediction of its label that overlaps it in time (the end of the clip that opened it: a live system
  can only alert once the clip is complete), minus the ground-truth start. Events without such an alert
  have no latency (they are counted in ``missed``).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

IOU_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
ERROR_IOU = 0.5


class Spanned(Protocol):
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...


class Labelled(Spanned, Protocol):
    @property
    def label(self) -> str: ...


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PredEvent(_Out):
    """A tracked event as the pipeline reported it (after its close)."""

    label: str
    start: float
    end: float
    confidence: float = 1.0
    opened_at: float = Field(description="Stream time of its open: the end of the clip that opened it.")


class Match(_Out):
    gt: int = Field(description="Index into the ground-truth events of the label.")
    pred: int = Field(description="Index into the predictions of the label.")
    iou: float


class Counts(_Out):
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(tp=self.tp + other.tp, fp=self.fp + other.fp, fn=self.fn + other.fn)


def tiou(a: Spanned, b: Spanned) -> float:
    inter = max(0.0, min(a.end, b.end) - max(a.start, b.start))
    union = max(a.end, b.end) - min(a.start, b.start)
    if union <= 0:
        return 1.0 if (a.start, a.end) == (b.start, b.end) else 0.0
    return inter / union


def match(gt: Sequence[Spanned], pred: Sequence[Spanned], threshold: float) -> list[Match]:
    """One-to-one greedy matching by IoU (see the module docstring); spans of one label."""
    candidates = [
        (iou, g, p)
        for g, a in enumerate(gt)
        for p, b in enumerate(pred)
        if (iou := tiou(a, b)) >= threshold and iou > 0
    ]
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    used_gt: set[int] = set()
    used_pred: set[int] = set()
    out = []
    for iou, g, p in candidates:
        if g in used_gt or p in used_pred:
            continue
        used_gt.add(g)
        used_pred.add(p)
        out.append(Match(gt=g, pred=p, iou=round(iou, 6)))
    return sorted(out, key=lambda m: m.gt)


def by_label(items: Sequence[Labelled]) -> dict[str, list[Labelled]]:
    out: dict[str, list[Labelled]] = {}
    for it in sorted(items, key=lambda x: (x.start, x.end)):
        out.setdefault(it.label, []).append(it)
    return out


def label_counts(gt: Sequence[Labelled], pred: Sequence[Labelled], threshold: float) -> dict[str, Counts]:
    """TP/FP/FN per label for one video at one IoU threshold."""
    g, p = by_label(gt), by_label(pred)
    out = {}
    for label in sorted(set(g) | set(p)):
        gs, ps = g.get(label, []), p.get(label, [])
        tp = len(match(gs, ps, threshold))
        out[label] = Counts(tp=tp, fp=len(ps) - tp, fn=len(gs) - tp)
    return out


def boundary_errors(
    gt: Sequence[Labelled], pred: Sequence[Labelled], threshold: float = ERROR_IOU
) -> list[tuple[float, float]]:
    """(|start error|, |end error|) of every pair matched at ``threshold``, in seconds."""
    g, p = by_label(gt), by_label(pred)
    out = []
    for label in sorted(set(g) & set(p)):
        for m in match(g[label], p[label], threshold):
            a, b = g[label][m.gt], p[label][m.pred]
            out.append((abs(b.start - a.start), abs(b.end - a.end)))
    return out


def segment_tious(gt: Sequence[Spanned], pred: Sequence[Spanned]) -> list[float]:
    """Best IoU of each ground-truth segment with any predicted segment."""
    return [max((tiou(a, b) for b in pred), default=0.0) for a in gt]


def alert_latencies(gt: Sequence[Labelled], pred: Sequence[PredEvent]) -> list[float | None]:
    """Per ground-truth event (in the given order): first open of an overlapping same-label prediction minus
    its start, or None when no prediction of its label overlaps it."""
    out: list[float | None] = []
    for a in gt:
        opens = [b.opened_at for b in pred if b.label == a.label and b.start <= a.end and b.end >= a.start]
        out.append(round(min(opens) - a.start, 6) if opens else None)
    return out


class Summary(_Out):
    n: int
    mean: float | None = None
    median: float | None = None
    max: float | None = None


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        return Summary(n=0)
    return Summary(
        n=len(values),
        mean=round(statistics.fmean(values), 6),
        median=round(statistics.median(values), 6),
        max=round(max(values), 6),
    )
