"""GLM-4.5V behind an OpenAI-compatible chat-completions server (vLLM or SGLang in production).

One request per clip (vLLM takes at most one video per prompt), at most ``max_concurrency`` in flight,
sent from a thread pool so the synchronous worker can call :meth:`OpenAIBackend.generate` directly.

How the frames travel is a small, swappable :class:`FrameTransport`:

``frames_as="video"`` (default, :class:`VllmJpegVideo`)
    One ``video_url`` part holding ``data:video/jpeg;base64,<jpeg1>,<jpeg2>,...``: vLLM's format for a list of
    pre-extracted JPEG frames (``VideoMediaIO.load_base64`` splits on ``,`` and decodes each frame). The
    frame times travel in the request field ``media_io_kwargs = {"video": {fps, frames_indices,
    total_num_frames, duration, do_sample_frames: false, num_frames: T}}`` -- the same metadata the
    in-process backend hands the HF processor (:meth:`ClipInput.video_metadata`). What vLLM does with it,
    as read in vLLM's source and PRs (not run against a live server here):

    * ``media_io_kwargs`` as a request field exists since vLLM PR #34778 (Feb 2026). Older servers ignore
      unknown request fields (pydantic ``extra="allow"``, logged as "fields ... ignored"), so sending it is
      harmless there.
    * For ``video/jpeg`` vLLM builds the video metadata from these kwargs (PRs #37301, #40133, spring 2026):
      ``fps`` (default 1), ``frames_indices`` (default ``0..T-1``), ``do_sample_frames`` (default false).
      GLM-4.5V's vLLM processor then prints ``int(frames_indices[2k] / fps)`` before frame pair k, so the
      model sees the true whole seconds since the clip start, exactly as in-process.
    * Recent vLLM keeps only the first ``num_frames`` (default 32) JPEGs of a ``video/jpeg`` URL; sending
      ``num_frames = T`` keeps every frame we sampled.
    * Before PR #37301 vLLM returned empty metadata for ``video/jpeg``; reports differ on whether GLM-4.xV
      then worked (with frames assumed at the processor's default rate) or failed with
      "VideoMetadata ... missing total_num_frames". Use a vLLM from 2026 or ``frames_as="images"``.
    * SGLang: its ``load_video`` base64-decodes everything after the first comma of a ``data:`` URL as ONE
      encoded video file (decord/torchcodec), so this JPEG-list format is, as far as the source shows, not
      accepted there, and SGLang has no ``media_io_kwargs``: use ``frames_as="images"`` with SGLang.

``frames_as="images"`` (:class:`TimedImages`)
    Each frame as an ``image_url`` part preceded by a text part ``t=<seconds>s``: works on any
    OpenAI-compatible VLM endpoint. The model then sees separate images, not a video, so each frame costs a
    whole image's tokens (twice the video cost) and the server may need a higher
    ``--limit-mm-per-prompt`` for images.

Responses: vLLM's ``--reasoning-parser glm45`` moves the ``<think>`` block into ``reasoning_content``
(older vLLM, SGLang) or ``reasoning`` (vLLM after PR #27752); either is re-attached as
``<think>...</think>`` before the content so the result parser sees the same text as from the in-process
backend. ``skip_special_tokens: false`` keeps ``<|begin_of_box|>`` markers (vLLM sampling parameter; SGLang
has the same field).
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import math
import random
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

from vstream.config import ModelSettings
from vstream.encode import encode_jpeg
from vstream.model.base import BackendError, ClipInput, Generation, TaskSpec

logger = logging.getLogger(__name__)

FramesAs = Literal["video", "images"]
PATCH = 28  # pixels per visual token side after GLM's 2x2 spatial merge of 14-pixel patches
# Statuses worth another try: the server is busy, overloaded or restarting. Every other 4xx means the
# request itself is wrong (400, 401, 403, 404, 413, 422, ...), so repeating it cannot help.
RETRY_STATUS = frozenset({408, 429})  # plus every 5xx


def _grid(side: int) -> int:
    # GLM's smart_resize rounds each side to the nearest multiple of 28.
    return max(1, round(side / PATCH))


class FrameTransport(Protocol):
    """How a clip's frames are put into one chat-completions request."""

    name: str

    def visual_tokens(self, clip: ClipInput) -> int: ...

    def content_parts(self, clip: ClipInput, jpegs: Sequence[bytes]) -> list[dict[str, Any]]:
        """The user-content parts that carry the frames (the prompt's text part follows them)."""
        ...

    def request_fields(self, clip: ClipInput) -> dict[str, Any]:
        """Extra top-level request fields (frame timing metadata), merged into the body."""
        ...


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class VllmJpegVideo:
    """One ``video_url`` part with vLLM's ``data:video/jpeg;base64,f1,f2,...`` plus the frame timing in
    ``media_io_kwargs`` (see the module docstring for what vLLM does with it)."""

    name = "video"

    def visual_tokens(self, clip: ClipInput) -> int:
        return math.ceil(len(clip.frames) / 2) * _grid(clip.height) * _grid(clip.width)

    def content_parts(self, clip: ClipInput, jpegs: Sequence[bytes]) -> list[dict[str, Any]]:
        url = "data:video/jpeg;base64," + ",".join(_b64(j) for j in jpegs)
        return [{"type": "video_url", "video_url": {"url": url}}]

    def request_fields(self, clip: ClipInput) -> dict[str, Any]:
        meta = clip.video_metadata()
        video = {**meta, "do_sample_frames": False, "num_frames": len(clip.frames)}
        return {"media_io_kwargs": {"video": video}}


def format_seconds(t: float) -> str:
    """``0.5`` -> ``"0.5"``, ``12.0`` -> ``"12"``: short and exact to the millisecond."""
    return f"{t:.3f}".rstrip("0").rstrip(".")


class TimedImages:
    """Each frame as an ``image_url`` part preceded by a ``t=<seconds>s`` text part (any OpenAI VLM)."""

    name = "images"

    def visual_tokens(self, clip: ClipInput) -> int:
        # An image is its own temporal pair (the frame is repeated), so it costs what a video pair costs.
        return len(clip.frames) * _grid(clip.height) * _grid(clip.width)

    def content_parts(self, clip: ClipInput, jpegs: Sequence[bytes]) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        for t, jpeg in zip(clip.rel_timestamps, jpegs, strict=True):
            parts.append({"type": "text", "text": f"t={format_seconds(t)}s"})
            parts.append({"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + _b64(jpeg)}})
        return parts

    def request_fields(self, clip: ClipInput) -> dict[str, Any]:
        return {}


TRANSPORTS: dict[str, FrameTransport] = {"video": VllmJpegVideo(), "images": TimedImages()}


@dataclass
class _Outcome:
    """One HTTP attempt: a parsed reply, or an error and whether trying again may help."""

    data: dict[str, Any] | None = None
    error: str | None = None
    retryable: bool = True
    retry_after: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _server_message(resp: httpx.Response) -> str:
    """The error text of a vLLM/SGLang/OpenAI error body, else the start of the raw body."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300].strip() or resp.reason_phrase
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])
    return json.dumps(body)[:300]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _check_reply(data: Any) -> str | None:
    """Why a 200 body is not a usable chat completion, or None when it is."""
    if not isinstance(data, dict):
        return "response is not a JSON object"
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return "response has no choices"
    if not isinstance(choices[0].get("message"), dict):
        return "response choice has no message"
    return None


def compose_text(message: Mapping[str, Any], thinking: bool) -> str:
    """The model's whole output as the in-process backend would decode it: ``<think>R</think>C``."""
    content = message.get("content") or ""
    reasoning = message.get("reasoning_content")
    if reasoning is None:
        reasoning = message.get("reasoning")
    if reasoning is None:
        return content
    if not thinking and not content:
        # Thinking was off (the template already closed the think block), so anything the server's
        # reasoning parser filed as reasoning is really the answer: keep it where the parser looks.
        return str(reasoning)
    return f"<think>{reasoning}</think>{content}"


class OpenAIBackend:
    """:class:`~vstream.model.base.ModelBackend` talking to an OpenAI-compatible chat-completions server."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        timeout: float = 120.0,
        max_retries: int = 3,
        max_concurrency: int = 4,
        max_visual_tokens: int = 30_000,
        *,
        frames_as: FramesAs = "video",
        transport: FrameTransport | None = None,
        jpeg_quality: int = 85,
        extra_body: Mapping[str, Any] | None = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        retry_after_max_s: float = 30.0,
    ) -> None:
        if frames_as not in TRANSPORTS:
            raise ValueError(f"frames_as must be one of {sorted(TRANSPORTS)}, not {frames_as!r}")
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise ValueError("need max_concurrency >= 1, max_retries >= 0 and timeout > 0")
        self.model_id = model
        self.base_url = base_url.rstrip("/")
        self.transport: FrameTransport = transport or TRANSPORTS[frames_as]
        self._timeout = timeout
        self._max_retries = max_retries
        self._max_visual_tokens = max_visual_tokens
        self._jpeg_quality = jpeg_quality
        self._extra_body = dict(extra_body or {})
        self._backoff = (backoff_base_s, backoff_max_s, retry_after_max_s)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url + "/",
            headers=headers,
            # A short connect timeout: a dead host should fail fast, a busy one may take the full timeout.
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
        )
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="openai-backend")
        self._closed = threading.Event()

    @classmethod
    def from_settings(cls, settings: ModelSettings, **kwargs: Any) -> OpenAIBackend:
        return cls(
            base_url=settings.base_url,
            model=settings.model,
            api_key=settings.api_key,
            timeout=settings.request_timeout_s,
            max_retries=settings.max_retries,
            max_concurrency=settings.max_concurrency,
            max_visual_tokens=settings.max_visual_tokens,
            **kwargs,
        )

    def check(self) -> list[str]:
        """GET /models once; raise :class:`BackendError` unless the server answers and serves our model.
        Returns the served model ids."""
        url = f"{self.base_url}/models"
        try:
            resp = self._client.get("models")
        except httpx.HTTPError as exc:
            raise BackendError(f"OpenAI-compatible server at {url} is unreachable: {exc!r}") from exc
        if resp.status_code in (401, 403):
            raise BackendError(
                f"{url} refused the API key (HTTP {resp.status_code}): {_server_message(resp)}"
            )
        if resp.status_code != 200:
            raise BackendError(f"{url} answered HTTP {resp.status_code}: {_server_message(resp)}")
        try:
            ids = [str(m["id"]) for m in resp.json()["data"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"{url} did not return an OpenAI model list: {resp.text[:200]!r}") from exc
        if self.model_id not in ids:
            raise BackendError(
                f"{url} does not serve model {self.model_id!r} (it serves {ids}); set the model name to "
                "the server's --served-model-name"
            )
        return ids

    def generate(self, clips: Sequence[ClipInput], task: TaskSpec) -> list[Generation]:
        futures: list[Future[Generation] | Generation] = []
        for clip in clips:
            try:
                futures.append(self._pool.submit(self._generate_one, clip, task))
            except RuntimeError:  # the pool is shut down: the backend was closed
                futures.append(Generation(error="backend is closed", retryable=True))
        return [f if isinstance(f, Generation) else self._result(f) for f in futures]

    def generate_text(
        self, prompts: Sequence[str], *, max_new_tokens: int = 1024, thinking: bool = False
    ) -> list[Generation]:
        """GLM-4.5V as a text model: one chat completion per prompt, same retries as clips."""
        futures = [self._pool.submit(self._text_one, p, max_new_tokens, thinking) for p in prompts]
        return [self._result(f) for f in futures]

    def _text_one(self, prompt: str, max_new_tokens: int, thinking: bool) -> Generation:
        body = {
            "model": self.model_id,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_new_tokens,
            "temperature": 0.0,
            "top_p": 1e-5,
            "stream": False,
            "chat_template_kwargs": {"enable_thinking": thinking},
            **self._extra_body,
        }
        started = time.monotonic()
        outcome, attempts = self._send(json.dumps(body, separators=(",", ":")).encode(), "text")
        if outcome.data is None:
            return Generation(error=outcome.error, retryable=outcome.retryable, extra={"attempts": attempts})
        usage = outcome.data.get("usage") or {}
        return Generation(
            text=compose_text(outcome.data["choices"][0]["message"], thinking),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            new_tokens=int(usage.get("completion_tokens") or 0),
            seconds=time.monotonic() - started,
        )

    @staticmethod
    def _result(future: Future[Generation]) -> Generation:
        try:
            return future.result()
        except Exception as exc:  # cancelled by close(), or a bug: never let it escape generate
            return Generation(error=f"request not completed: {exc!r}", retryable=True)

    def close(self) -> None:
        self._closed.set()  # wakes backoff sleeps so close() does not wait for them
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one clip -------------------------------------------------------------------------------------

    def _generate_one(self, clip: ClipInput, task: TaskSpec) -> Generation:
        start = time.monotonic()
        try:
            tokens = self.transport.visual_tokens(clip)
            problem = self._refuse(clip, tokens)
            if problem:
                return Generation(visual_tokens=tokens, error=problem, retryable=False)
            body = self._body(clip, task)
        except Exception as exc:  # malformed frames: sending the clip again cannot help
            logger.exception("clip %s: cannot build the request", clip.clip_id)
            return Generation(error=f"cannot build request: {exc!r}", retryable=False)
        outcome, attempts = self._send(body, clip.clip_id)
        seconds = time.monotonic() - start
        extra: dict[str, object] = {"attempts": attempts, "transport": self.transport.name, **outcome.extra}
        if outcome.data is None:
            logger.warning("clip %s failed after %d attempt(s): %s", clip.clip_id, attempts, outcome.error)
            return Generation(
                visual_tokens=tokens,
                seconds=seconds,
                error=outcome.error,
                retryable=outcome.retryable,
                extra=extra,
            )
        choice = outcome.data["choices"][0]
        usage = outcome.data.get("usage") or {}
        extra["finish_reason"] = choice.get("finish_reason")
        return Generation(
            text=compose_text(choice["message"], task.thinking),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            visual_tokens=tokens,
            new_tokens=int(usage.get("completion_tokens") or 0),
            seconds=seconds,
            extra=extra,
        )

    def _refuse(self, clip: ClipInput, tokens: int) -> str | None:
        frames = clip.frames
        if frames.ndim != 4 or frames.shape[3] != 3:
            return f"frames must be T x H x W x 3, got shape {frames.shape}"
        n = len(frames)
        if n < 2 or n % 2:
            return f"GLM-4.5V needs an even number of frames >= 2 (temporal patch 2), got {n}"
        if len(clip.rel_timestamps) != n:
            return f"{len(clip.rel_timestamps)} timestamps for {n} frames"
        if tokens > self._max_visual_tokens:
            return f"clip needs {tokens} visual tokens, over the limit of {self._max_visual_tokens}"
        return None

    def _body(self, clip: ClipInput, task: TaskSpec) -> bytes:
        jpegs = [encode_jpeg(frame, self._jpeg_quality) for frame in clip.frames]
        content = [*self.transport.content_parts(clip, jpegs), {"type": "text", "text": task.prompt}]
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": task.max_new_tokens,
            "temperature": 0.0,
            "top_p": 1e-5,  # GLM-V's recommended value; with temperature 0 both mean greedy decoding
            "stream": False,
            "skip_special_tokens": False,  # keeps <|begin_of_box|>...<|end_of_box|> in the text
            "chat_template_kwargs": {"enable_thinking": task.thinking},
            **self.transport.request_fields(clip),
            **self._extra_body,
        }
        # Serialised once: the same bytes are re-sent on every retry.
        return json.dumps(body, separators=(",", ":")).encode()

    # --- HTTP with retries ----------------------------------------------------------------------------

    def _send(self, body: bytes, clip_id: str) -> tuple[_Outcome, int]:
        attempts = 0
        while True:
            attempts += 1
            outcome = self._attempt(body)
            if outcome.data is not None or not outcome.retryable or attempts > self._max_retries:
                return outcome, attempts
            delay = self._delay(attempts, outcome.retry_after)
            logger.info(
                "clip %s: attempt %d failed (%s); retrying in %.2f s", clip_id, attempts, outcome.error, delay
            )
            if self._closed.wait(delay):
                outcome.error = f"{outcome.error}; backend closed before the retry"
                return outcome, attempts

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        base, cap, retry_after_cap = self._backoff
        if retry_after is not None:
            # The server said when to come back; capped so a huge value cannot stall a worker.
            return min(retry_after, retry_after_cap)
        # Exponential backoff with jitter, so clips failing together do not retry in lockstep.
        return min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    def _attempt(self, body: bytes) -> _Outcome:
        try:
            resp = self._client.post(
                "chat/completions", content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TimeoutException as exc:
            return _Outcome(error=f"timed out after {self._timeout:g} s ({type(exc).__name__})")
        except httpx.TransportError as exc:  # refused, reset, dropped mid-response
            return _Outcome(error=f"connection failed: {type(exc).__name__}: {exc}")
        code = resp.status_code
        if code != 200:
            retryable = code in RETRY_STATUS or code >= 500
            return _Outcome(
                error=f"HTTP {code}: {_server_message(resp)}",
                retryable=retryable,
                retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                extra={"status": code},
            )
        try:
            data = resp.json()
        except ValueError:
            # A 200 with a broken body is a server or proxy hiccup, not a problem with the clip.
            return _Outcome(error=f"invalid JSON in response: {resp.text[:100]!r}")
        problem = _check_reply(data)
        if problem:
            return _Outcome(error=f"{problem}: {resp.text[:200]!r}")
        return _Outcome(data=data, extra={"response_id": data.get("id")})
