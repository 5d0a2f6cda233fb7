"""Clip messages in, validated results out: decode frames, run the backend, parse, map to stream time.

Shared by the infer worker (which stores results in Redis) and ``vstream analyze`` (which prints them).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vstream.analysis.parse import parse_output
from vstream.analysis.records import CaptionRecord, ClipResult, SegmentRecord
from vstream.analysis.results import ParsedOutput
from vstream.analysis.tasks import render
from vstream.analysis.timeline import observations
from vstream.blobstore import BlobError, BlobReader
from vstream.encode import decode_jpeg
from vstream.model.base import BackendUnavailable, ClipInput, Generation, ModelBackend, TaskSpec
from vstream.schema import ClipMessage, SchemaError, decode_clip
from vstream.vocabulary import Task

logger = logging.getLogger(__name__)


@dataclass
class Analysis:
    """The outcome for one clip: a result (ok or a recorded parse failure) or an error without one."""

    clip: ClipMessage
    result: ClipResult | None = None
    parsed: ParsedOutput | None = None
    error: str | None = None
    retryable: bool = False
    generation: Generation | None = None
    # the model server was down or overloaded: no fault of the clip, so no attempt should count
    unavailable: bool = False
    retry_after: float | None = None


def resolve(clip: ClipMessage, blobs: BlobReader) -> ClipMessage:
    """Fetch a claim-checked clip's frames from the blob store."""
    if not clip.payload_ref:
        return clip
    full = decode_clip(blobs.get(clip.payload_ref))
    if full.clip_id != clip.clip_id:
        raise SchemaError(f"blob {clip.payload_ref} holds {full.clip_id}, not {clip.clip_id}")
    return full


def to_input(clip: ClipMessage) -> ClipInput:
    # Clips from before per-frame sizes (a live source that changed resolution) can declare one size
    # and mix others: fit each frame to the declared size rather than fail the clip.
    frames = np.stack([_fit(decode_jpeg(f), clip.width, clip.height) for f in clip.frames])
    # a frame may sit a source frame before its slot (and so before t_start): the model sees slot times
    rel = tuple(max(0.0, round(t - clip.t_start, 6)) for t in clip.timestamps)
    return ClipInput(clip_id=clip.clip_id, frames=frames, rel_timestamps=rel, fps=clip.params.fps)


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize to ``width`` x ``height`` (a no-op for a frame already that size)."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    rows = np.arange(height) * h // height
    cols = np.arange(width) * w // width
    out: np.ndarray = image[rows[:, None], cols[None, :]]
    return out


class ClipAnalyzer:
    def __init__(
        self,
        backend: ModelBackend,
        blobs: BlobReader,
        *,
        thinking: bool = False,
        max_new_tokens: int = 1024,
    ) -> None:
        self.backend, self.blobs = backend, blobs
        self.thinking, self.max_new_tokens = thinking, max_new_tokens

    def task_for(self, clip: ClipMessage) -> TaskSpec:
        return render(
            clip.task,
            duration_s=round(clip.t_end - clip.t_start, 3),
            event_types=clip.event_types,
            thinking=self.thinking,
            max_new_tokens=self.max_new_tokens,
        )

    def run(self, clips: Sequence[ClipMessage]) -> list[Analysis]:
        """One Analysis per clip, in order; never raises for a per-clip problem."""
        out = {c.clip_id: Analysis(c) for c in clips}
        groups: dict[TaskSpec, list[tuple[ClipMessage, ClipInput]]] = defaultdict(list)
        for clip in clips:
            try:
                full = resolve(clip, self.blobs)
                out[clip.clip_id].clip = full
                groups[self.task_for(full)].append((full, to_input(full)))
            except (BlobError, SchemaError, ValueError) as exc:
                out[clip.clip_id].error = f"bad clip: {exc}"
        for task, members in groups.items():
            try:
                generations = self._generate([i for _, i in members], task)
            except BackendUnavailable as exc:
                for clip, _ in members:
                    out[clip.clip_id] = Analysis(
                        clip,
                        error=f"model server unavailable: {exc}",
                        retryable=True,
                        unavailable=True,
                        retry_after=exc.retry_after,
                    )
                continue
            for (clip, _), gen in zip(members, generations, strict=True):
                out[clip.clip_id] = self._finish(clip, task, gen)
        return [out[c.clip_id] for c in clips]

    def _generate(self, inputs: list[ClipInput], task: TaskSpec) -> list[Generation]:
        try:
            gens = self.backend.generate(inputs, task)
        except BackendUnavailable:
            raise
        except Exception as exc:  # a backend bug must not take the worker down: every clip gets the error
            logger.exception("backend %s failed on a batch of %d", self.backend.model_id, len(inputs))
            return [Generation(error=f"backend failed: {type(exc).__name__}: {exc}", retryable=True)] * len(
                inputs
            )
        if len(gens) != len(inputs):
            return [Generation(error="backend returned the wrong number of results", retryable=True)] * len(
                inputs
            )
        return gens

    def _finish(self, clip: ClipMessage, task: TaskSpec, gen: Generation) -> Analysis:
        if gen.error is not None:
            return Analysis(clip, error=gen.error, retryable=gen.retryable, generation=gen)
        parsed = parse_output(
            gen.text,
            task.name,
            clip_duration_s=max(clip.t_end - clip.t_start, 1e-3),
            width=clip.width,
            height=clip.height,
            allowed_labels=task.event_types or None,
        )
        return Analysis(
            clip,
            result=to_result(clip, task, gen, parsed, self.backend.model_id),
            parsed=parsed,
            generation=gen,
        )


def to_result(
    clip: ClipMessage, task: TaskSpec, gen: Generation, parsed: ParsedOutput, model_id: str
) -> ClipResult:
    name: Task = task.name
    segments = [
        SegmentRecord(
            segment_id=f"{clip.clip_id}-s{k}",
            stream_id=clip.stream_id,
            start=round(min(clip.t_start + s.start_s, clip.t_end), 3),
            end=round(min(clip.t_start + s.end_s, clip.t_end), 3),
            title=s.title,
            description=s.description,
            clip_ids=[clip.clip_id],
        )
        for k, s in enumerate(parsed.segments)
    ]
    caption = None
    if parsed.caption is not None:
        caption = CaptionRecord(
            stream_id=clip.stream_id,
            clip_id=clip.clip_id,
            start=clip.t_start,
            end=clip.t_end,
            text=parsed.caption.text,
            wall_start=clip.wall_timestamps[0] if clip.wall_timestamps else None,
        )
    return ClipResult(
        stream_id=clip.stream_id,
        clip_id=clip.clip_id,
        index=clip.index,
        task=name,
        model_id=model_id,
        prompt_hash=task.prompt_hash,
        thinking=task.thinking,
        t_start=clip.t_start,
        t_end=clip.t_end,
        wall_start=clip.wall_timestamps[0] if clip.wall_timestamps else None,
        ok=parsed.ok,
        error=parsed.error,
        observations=observations(parsed, clip),
        segments=segments,
        caption=caption,
        raw=gen.text,
        warnings=parsed.warnings[:20],
        model_seconds=round(gen.seconds, 4),
        visual_tokens=gen.visual_tokens,
    )
