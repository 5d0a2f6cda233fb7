"""The evaluation plot (PNG): per-label F1 at each IoU threshold, and a timeline of ground truth against
detections for every video. matplotlib's Agg backend renders without a display (servers, CI)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vstream.evaluation.report import ALL, EvalReport, VideoRun

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_MAX_VIDEOS = 12  # timeline rows beyond this would be unreadable


def plot_report(report: EvalReport, out: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report.runs[:_MAX_VIDEOS]
    labels = sorted({s.label for s in report.scores if s.label != ALL})
    colours = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
    fig, (bars, timeline) = plt.subplots(
        2, 1, figsize=(10, 3.2 + 0.55 * max(len(runs), 1)), gridspec_kw={"height_ratios": [1, 1.3]}
    )
    _f1_bars(bars, report, [*labels, ALL])
    _timeline(timeline, runs, colours)
    fig.suptitle(f"vstream eval: {report.dataset} — model {report.model_id}", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _f1_bars(ax: Axes, report: EvalReport, labels: list[str]) -> None:
    width = 0.8 / max(len(report.ious), 1)
    f1 = {(s.label, s.iou): s.f1 for s in report.scores}
    for j, iou in enumerate(report.ious):
        xs = [i + (j - (len(report.ious) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, [f1.get((label, iou), 0.0) for label in labels], width, label=f"IoU {iou:g}")
    ax.set_xticks(range(len(labels)), [label[:34] for label in labels], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.legend(fontsize=8, ncols=len(report.ious))


def _timeline(ax: Axes, runs: Sequence[VideoRun], colours: dict[str, Any]) -> None:
    ticks: list[float] = []
    names: list[str] = []
    for row, run in enumerate(runs):
        y = (len(runs) - 1 - row) * 2.0
        for e in run.gt_events:
            ax.broken_barh([(e.start, e.end - e.start)], (y + 0.55, 0.7), color=colours.get(e.label, "grey"))
        for p in run.events:
            ax.broken_barh(
                [(p.start, p.end - p.start)],
                (y - 0.35, 0.7),
                color=colours.get(p.label, "grey"),
                hatch="//",
                alpha=0.7,
            )
            ax.plot([p.opened_at], [y], marker="v", color="black", markersize=4)
        ticks += [y + 0.9, y]
        names += [f"{run.id} truth", f"{run.id} detected"]
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set_xlim(0, max((r.duration for r in runs), default=1.0) or 1.0)
    ax.set_xlabel("media seconds (▼ = alert opened)")
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=lbl) for lbl, c in colours.items()]
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncols=3)
