"""How a clip's frames travel in an OpenAI-compatible chat-completions request (``model.frames``).

``video`` (:class:`Mp4Video`)
    The clip's frames encoded as a short H.264 MP4 at the clip's own sampling rate, sent as one
    ``video_url`` part with a ``data:video/mp4;base64,...`` URL. It needs no server flag: the frame rate
    and frame count travel in the container. What vLLM 0.32 does with it (read in its source,
    ``vllm/multimodal/video.py`` and ``vllm/model_executor/models/glm4_1v.py``, and checked against a
    running server by tests/vstream/model/test_vllm_real.py): for ``Glm4vVideoProcessor`` models it picks
    the ``opencv_dynamic`` loader, which reads ``CAP_PROP_FPS`` and ``CAP_PROP_FRAME_COUNT``, takes
    ``duration = frames / fps`` and samples at 2 fps: ``ceil(i * fps / 2)`` for ``i < floor(duration * 2)``.
    At a sampling rate of 2 fps or less that is every frame, with ``frames_indices = 0..T-1``; GLM's
    processor then prints ``int(frames_indices[2k] / fps)`` before pair k -- the same whole seconds the
    in-process backend gets from :meth:`ClipInput.video_metadata`. Above 2 fps vLLM drops frames (use
    ``video-kwargs`` or ``images`` there). SGLang decodes a ``data:`` video URL as one video file too.
``video-kwargs`` (:class:`JpegVideoKwargs`)
    vLLM's list-of-JPEGs video (``data:video/jpeg;base64,f1,f2,...``) with the frame times in the request
    field ``media_io_kwargs``. vLLM refuses that field (HTTP 400) unless started with
    ``--trust-request-mm-kwargs``; with it the prompt is token-identical to the in-process backend's at any
    frame rate.
``images`` (:class:`TimedImages`)
    Each frame as an ``image_url`` part preceded by a ``t=<seconds>s`` text part: any OpenAI-compatible
    VLM endpoint. Each frame costs a whole image's tokens, and the prompt's sentence about the number
    before each pair of frames is replaced by one about the ``t=`` labels.
"""

from __future__ import annotations

import base64
import io
import logging
import math
from fractions import Fraction
from typing import Any, Literal, Protocol

import av
import numpy as np

from vstream.encode import encode_jpeg
from vstream.model.base import ClipInput
from vstream.prompts import IMAGES_TIME_MARKS, VIDEO_TIME_MARKS

logger = logging.getLogger(__name__)

FramesAs = Literal["video", "video-kwargs", "images"]
PATCH = 28  # pixels per visual token side after GLM's 2x2 spatial merge of 14-pixel patches
MP4_EXACT_MAX_FPS = 2.0  # vLLM's GLM video loader samples a container at 2 fps


def grid(side: int) -> int:
    # GLM's smart_resize rounds each side to the nearest multiple of 28.
    return max(1, round(side / PATCH))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def format_seconds(t: float) -> str:
    """``0.5`` -> ``"0.5"``, ``12.0`` -> ``"12"``: short and exact to the millisecond."""
    return f"{t:.3f}".rstrip("0").rstrip(".")


class FrameTransport(Protocol):
    """How a clip's frames are put into one chat-completions request."""

    name: str

    def visual_tokens(self, clip: ClipInput) -> int: ...

    def content_parts(self, clip: ClipInput, jpeg_quality: int) -> list[dict[str, Any]]:
        """The user-content parts that carry the frames (the prompt's text part follows them)."""
        ...

    def request_fields(self, clip: ClipInput) -> dict[str, Any]:
        """Extra top-level request fields (frame timing metadata), merged into the body."""
        ...

    def prompt(self, text: str) -> str:
        """The task prompt as this form should word it."""
        ...


def encode_mp4(frames: np.ndarray, fps: float, quality: int = 85) -> bytes:
    """T x H x W x 3 uint8 frames as an H.264 MP4 at ``fps``, one frame per tick (constant frame rate).

    4:2:0 needs even sides; a clip with an odd side is sent as 4:4:4 instead of being resized, so the
    server's resize (and so the visual token count) sees the clip's true size."""
    _, height, width, _ = frames.shape
    # x264's CRF: 0 lossless .. 51; JPEG-like quality 85 maps near 18 ("visually lossless").
    crf = max(0, min(51, round(51 - quality * 0.39)))
    rate = Fraction(fps).limit_denominator(1001)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        stream.options = {"crf": str(crf), "preset": "ultrafast", "tune": "zerolatency"}
        stream.codec_context.time_base = Fraction(1) / rate
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


class Mp4Video:
    """One ``video_url`` part holding the clip as an MP4 at its own frame rate (no server flag needed)."""

    name = "video"

    def __init__(self) -> None:
        self._warned_fps = False

    def visual_tokens(self, clip: ClipInput) -> int:
        return math.ceil(len(clip.frames) / 2) * grid(clip.height) * grid(clip.width)

    def content_parts(self, clip: ClipInput, jpeg_quality: int) -> list[dict[str, Any]]:
        if clip.fps > MP4_EXACT_MAX_FPS and not self._warned_fps:
            self._warned_fps = True
            logger.warning(
                "frames=video: clips sampled at %g fps; vLLM's GLM loader keeps 2 frames per second of an "
                "MP4, so it drops frames. Use frames=video-kwargs or images for rates above 2 fps",
                clip.fps,
            )
        url = "data:video/mp4;base64," + b64(encode_mp4(clip.frames, clip.fps, jpeg_quality))
        return [{"type": "video_url", "video_url": {"url": url}}]

    def request_fields(self, clip: ClipInput) -> dict[str, Any]:
        return {}

    def prompt(self, text: str) -> str:
        return text


class JpegVideoKwargs:
    """vLLM's ``data:video/jpeg;base64,f1,f2,...`` plus the frame timing in ``media_io_kwargs`` (needs
    ``--trust-request-mm-kwargs`` on the server)."""

    name = "video-kwargs"

    def visual_tokens(self, clip: ClipInput) -> int:
        return math.ceil(len(clip.frames) / 2) * grid(clip.height) * grid(clip.width)

    def content_parts(self, clip: ClipInput, jpeg_quality: int) -> list[dict[str, Any]]:
        jpegs = _jpegs(clip.frames, jpeg_quality)
        url = "data:video/jpeg;base64," + ",".join(b64(j) for j in jpegs)
        return [{"type": "video_url", "video_url": {"url": url}}]

    def request_fields(self, clip: ClipInput) -> dict[str, Any]:
        meta = clip.video_metadata()
        # num_frames = T: vLLM otherwise keeps only the first 32 JPEGs of the URL.
        video = {**meta, "do_sample_frames": False, "num_frames": len(clip.frames)}
        return {"media_io_kwargs": {"video": video}}

    def prompt(self, text: str) -> str:
        return text


class TimedImages:
    """Each frame as an ``image_url`` part preceded by a ``t=<seconds>s`` text part (any OpenAI VLM)."""

    name = "images"

    def visual_tokens(self, clip: ClipInput) -> int:
        # An image is its own temporal pair (the frame is repeated), so it costs what a video pair costs.
        return len(clip.frames) * grid(clip.height) * grid(clip.width)

    def content_parts(self, clip: ClipInput, jpeg_quality: int) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        jpegs = _jpegs(clip.frames, jpeg_quality)
        for t, jpeg in zip(clip.rel_timestamps, jpegs, strict=True):
            parts.append({"type": "text", "text": f"t={format_seconds(t)}s"})
            parts.append({"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + b64(jpeg)}})
        return parts

    def request_fields(self, clip: ClipInput) -> dict[str, Any]:
        return {}

    def prompt(self, text: str) -> str:
        return text.replace(VIDEO_TIME_MARKS, IMAGES_TIME_MARKS)


def _jpegs(frames: np.ndarray, quality: int) -> list[bytes]:
    return [encode_jpeg(frame, quality) for frame in frames]


def make_transport(name: str) -> FrameTransport:
    """A fresh transport for a ``model.frames`` value other than ``auto``."""
    if name == "video":
        return Mp4Video()
    if name == "video-kwargs":
        return JpegVideoKwargs()
    if name == "images":
        return TimedImages()
    raise ValueError(f"frames must be one of video, video-kwargs, images (or auto), not {name!r}")


def transport_names() -> tuple[str, ...]:
    """In ``auto``'s order of preference: exact times without a server flag first, images last."""
    return ("video", "video-kwargs", "images")


def probe_clip() -> ClipInput:
    """Two small frames: the cheapest clip GLM accepts (temporal patch 2), for the start-up probe."""
    frames = np.zeros((2, 112, 112, 3), dtype=np.uint8)
    frames[1] = 128
    return ClipInput("frames-probe", frames, (0.0, 0.5), 2.0)
