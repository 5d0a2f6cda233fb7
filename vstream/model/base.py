"""The one narrow interface every model backend implements: a batch of clips and a task in, one
:class:`Generation` per clip out. Backends live one per file and are chosen by ``model.type``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from vstream.vocabulary import Task


@dataclass(frozen=True)
class ClipInput:
    """Decoded frames of one clip, with times relative to the clip start (what the model sees)."""

    clip_id: str
    frames: np.ndarray  # T x H x W x 3 uint8, T even and >= 2
    rel_timestamps: tuple[float, ...]  # seconds from the clip start, one per frame
    fps: float  # the sampling rate the frames were taken at

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    def video_metadata(self) -> dict[str, object]:
        """GLM-4.5V prints ``int(frames_indices[2k] / fps)`` before frame pair k: with indices taken from the
        clip-relative timestamps, those tokens are the true seconds since the clip start."""
        indices = [round(t * self.fps) for t in self.rel_timestamps]
        return {
            "total_num_frames": len(indices),
            "fps": self.fps,
            "frames_indices": indices,
            "duration": len(indices) / self.fps,
        }


@dataclass(frozen=True)
class TaskSpec:
    """A rendered prompt for one task; ``prompt_hash`` versions results by the template that made them."""

    name: Task
    prompt: str
    prompt_hash: str
    thinking: bool = False
    max_new_tokens: int = 1024
    event_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class Generation:
    """What a backend returns for one clip. ``error`` set means no usable text: ``retryable`` says
    whether trying the clip again may help (timeouts, 429/5xx) or not (a clip over the token budget)."""

    text: str = ""
    prompt_tokens: int = 0
    visual_tokens: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    error: str | None = None
    retryable: bool = True
    extra: dict[str, object] = field(default_factory=dict)


class BackendError(RuntimeError):
    """A backend that cannot work at all (bad model path, unreachable server at start-up)."""


class BackendUnavailable(BackendError):
    """The model server is down or overloaded (connection refused, timeouts, 5xx/429 after the backend's
    own retries), so nothing is known to be wrong with the clips. ``generate``/``generate_text`` raise it
    instead of returning per-clip errors; the infer worker then pauses, waits ``retry_after`` (the server's
    Retry-After, if it sent one) or its own backoff, and tries again without counting an attempt toward
    the dead-letter limit."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelBackend(Protocol):
    model_id: str

    def generate(self, clips: Sequence[ClipInput], task: TaskSpec) -> list[Generation]:
        """One Generation per clip, in order; never raises for a per-clip problem."""
        ...

    def generate_text(
        self, prompts: Sequence[str], *, max_new_tokens: int = 1024, thinking: bool = False
    ) -> list[Generation]:
        """The model as a text model (hierarchical summaries); one Generation per prompt, never raises."""
        ...

    def close(self) -> None: ...
