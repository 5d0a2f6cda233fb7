"""GLM-4.5V behind an OpenAI-compatible chat-completions server (vLLM or SGLang in production).

One request per clip (vLLM takes at most one video per prompt), at most ``max_concurrency`` in flight,
sent from a thread pool so the synchronous worker can call :meth:`OpenAIBackend.generate` directly.

How the frames travel (``model.frames``) is a :class:`~vstream.model.openai_frames.FrameTransport`: an MP4
at the clip's frame rate (``video``), vLLM's JPEG list with ``media_io_kwargs`` (``video-kwargs``) or timed
images (``images``); see :mod:`vstream.model.openai_frames`. ``auto`` (:meth:`OpenAIBackend.probe_frames`)
sends a two-frame clip in each form once at start-up and keeps the first the server answers.

Vendor-only request fields (:data:`VENDOR_FIELDS`: vLLM/SGLang sampling and template extensions) are
sent until a server answers 400/422 naming one (``transformers serve`` rejects every unknown field with
422): the backend then drops it for good, logs that once, and sends the request again.

Outages -- connection refused or dropped, timeouts, 408/429/5xx after the backend's own retries -- are
not the clips' fault: :meth:`OpenAIBackend.generate` raises :class:`~vstream.model.base.BackendUnavailable`
for them instead of returning per-clip errors, so the worker waits the outage out. ``generate_text``
keeps returning retryable errors (its callers fall back per prompt and catch nothing).

Responses: vLLM's ``--reasoning-parser glm45`` moves the ``<think>`` block into ``reasoning_content``
(older vLLM, SGLang) or ``reasoning`` (vLLM after PR #27752); either is re-attached as
``<think>...</think>`` before the content so the result parser sees the same text as from the in-process
backend. ``skip_special_tokens: false`` keeps ``<|begin_of_box|>`` markers.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from vstream.config import ModelSettings
from vstream.model.base import BackendError, BackendUnavailable, ClipInput, Generation, TaskSpec
from vstream.model.openai_frames import (
    FrameTransport,
    format_seconds,
    make_transport,
    probe_clip,
    transport_names,
)
from vstream.retry import backoff_s, parse_retry_after

__all__ = ["VENDOR_FIELDS", "OpenAIBackend", "compose_text", "format_seconds"]

logger = logging.getLogger(__name__)

# Statuses worth another try: the server is busy, overloaded or restarting. Every other 4xx means the
# request itself is wrong (400, 401, 403, 404, 413, 422, ...), so repeating it cannot help.
RETRY_STATUS = frozenset({408, 429})  # plus every 5xx
# Request fields outside OpenAI's chat-completions schema; a strict server may refuse any of them.
VENDOR_FIELDS = ("skip_special_tokens", "chat_template_kwargs", "media_io_kwargs", "return_token_ids")
_FIELD_REFUSED = frozenset({400, 422})


@dataclass
class _Outcome:
    """One HTTP attempt: a parsed reply, or an error and whether trying again may help."""

    data: dict[str, Any] | None = None
    error: str | None = None
    retryable: bool = True
    retry_after: float | None = None
    # The server is down or overloaded (refused, dropped, timed out, 408/429/5xx): not the request's fault.
    outage: bool = False
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
        frames_as: str = "video",
        transport: FrameTransport | None = None,
        jpeg_quality: int = 85,
        extra_body: Mapping[str, Any] | None = None,
        return_token_ids: bool = False,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        retry_after_max_s: float = 30.0,
    ) -> None:
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise ValueError("need max_concurrency >= 1, max_retries >= 0 and timeout > 0")
        self.model_id = model
        self.base_url = base_url.rstrip("/")
        # "auto" starts as the first preference; probe_frames() settles it against the server.
        self.transport: FrameTransport = transport or make_transport(
            transport_names()[0] if frames_as == "auto" else frames_as
        )
        self._timeout = timeout
        self._max_retries = max_retries
        self._max_visual_tokens = max_visual_tokens
        self._jpeg_quality = jpeg_quality
        self._extra_body = dict(extra_body or {})
        self._return_token_ids = return_token_ids
        self._backoff = (backoff_base_s, backoff_max_s, retry_after_max_s)
        self._dropped: set[str] = set()  # vendor fields this server refused
        self._dropped_lock = threading.Lock()
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
        kwargs.setdefault("frames_as", settings.frames)
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

    @property
    def dropped_fields(self) -> frozenset[str]:
        """Vendor request fields this server refused and that are no longer sent."""
        with self._dropped_lock:
            return frozenset(self._dropped)

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

    def probe_frames(self, names: Sequence[str] | None = None) -> str:
        """Send a two-frame clip in each frame form (``auto``'s order unless ``names``), keep the first the
        server answers, log it and return its name. Raises :class:`BackendError` when none works."""
        clip = probe_clip()
        task = TaskSpec("caption", "Describe the video.", "probe", max_new_tokens=1)
        refusals: list[str] = []
        for name in names or transport_names():
            transport = make_transport(name)
            body = self._body(clip, task, transport)
            outcome, _ = self._send(body, clip.clip_id, required=_required(transport, clip))
            if outcome.data is not None:
                self.transport = transport
                logger.info("frames=auto: %s answers the %r frame form; using it", self.base_url, name)
                return name
            if outcome.outage and "status" not in outcome.extra:  # refused or timed out: no server to ask
                raise BackendError(f"{self.base_url} failed the frame-form probe: {outcome.error}")
            # A 4xx, or a 5xx (transformers serve fails on a video URL it cannot decode): the next form.
            refusals.append(f"{name}: {outcome.error}")
            logger.info("frames=auto: %s refuses the %r frame form (%s)", self.base_url, name, outcome.error)
        raise BackendError(f"{self.base_url} takes none of the frame forms ({'; '.join(refusals)})")

    def generate(self, clips: Sequence[ClipInput], task: TaskSpec) -> list[Generation]:
        """One Generation per clip; raises :class:`BackendUnavailable` when any clip met an outage."""
        futures: list[Future[Generation] | Generation] = []
        for clip in clips:
            try:
                futures.append(self._pool.submit(self._generate_one, clip, task))
            except RuntimeError:  # the pool is shut down: the backend was closed
                futures.append(Generation(error="backend is closed", retryable=True))
        return _raise_on_outage([f if isinstance(f, Generation) else self._result(f) for f in futures])

    def generate_text(
        self, prompts: Sequence[str], *, max_new_tokens: int = 1024, thinking: bool = False
    ) -> list[Generation]:
        """GLM-4.5V as a text model: one chat completion per prompt, same retries as clips. Never raises:
        its callers (lecture summaries, ask) fall back per prompt, so an outage is a retryable error here."""
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
        outcome, attempts = self._send(body, "text")
        if outcome.data is None:
            return _failed(outcome, {"attempts": attempts})
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
        transport = self.transport
        try:
            tokens = transport.visual_tokens(clip)
            problem = self._refuse(clip, tokens)
            if problem:
                return Generation(visual_tokens=tokens, error=problem, retryable=False)
            body = self._body(clip, task, transport)
        except Exception as exc:  # malformed frames: sending the clip again cannot help
            logger.exception("clip %s: cannot build the request", clip.clip_id)
            return Generation(error=f"cannot build request: {exc!r}", retryable=False)
        outcome, attempts = self._send(body, clip.clip_id, required=_required(transport, clip))
        seconds = time.monotonic() - start
        extra: dict[str, object] = {"attempts": attempts, "transport": transport.name, **outcome.extra}
        if outcome.data is None:
            logger.warning("clip %s failed after %d attempt(s): %s", clip.clip_id, attempts, outcome.error)
            gen = _failed(outcome, extra)
            return Generation(
                visual_tokens=tokens,
                seconds=seconds,
                error=gen.error,
                retryable=gen.retryable,
                extra=gen.extra,
            )
        choice = outcome.data["choices"][0]
        usage = outcome.data.get("usage") or {}
        extra["finish_reason"] = choice.get("finish_reason")
        if outcome.data.get("prompt_token_ids") is not None:  # vLLM, when return_token_ids was sent
            extra["prompt_token_ids"] = list(outcome.data["prompt_token_ids"])
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

    def _body(self, clip: ClipInput, task: TaskSpec, transport: FrameTransport) -> dict[str, Any]:
        content = [
            *transport.content_parts(clip, self._jpeg_quality),
            {"type": "text", "text": transport.prompt(task.prompt)},
        ]
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": task.max_new_tokens,
            "temperature": 0.0,
            "top_p": 1e-5,  # GLM-V's recommended value; with temperature 0 both mean greedy decoding
            "stream": False,
            "skip_special_tokens": False,  # keeps <|begin_of_box|>...<|end_of_box|> in the text
            "chat_template_kwargs": {"enable_thinking": task.thinking},
            **transport.request_fields(clip),
            **self._extra_body,
        }
        if self._return_token_ids:
            body["return_token_ids"] = True
        return body

    # --- HTTP with retries ----------------------------------------------------------------------------

    def _encode(self, body: Mapping[str, Any]) -> bytes:
        dropped = self.dropped_fields
        return json.dumps({k: v for k, v in body.items() if k not in dropped}, separators=(",", ":")).encode()

    def _send(
        self, body: Mapping[str, Any], clip_id: str, *, required: frozenset[str] = frozenset()
    ) -> tuple[_Outcome, int]:
        attempts = 0
        payload = self._encode(body)
        while True:
            attempts += 1
            outcome = self._attempt(payload)
            if outcome.data is None and self._learn_refused_fields(body, outcome, required):
                payload = self._encode(body)  # the same request without what the server refused
                continue
            if outcome.data is not None or not outcome.retryable or attempts > self._max_retries:
                return outcome, attempts
            delay = self._delay(attempts, outcome.retry_after)
            logger.info(
                "clip %s: attempt %d failed (%s); retrying in %.2f s", clip_id, attempts, outcome.error, delay
            )
            if self._closed.wait(delay):
                outcome.error = f"{outcome.error}; backend closed before the retry"
                return outcome, attempts

    def _learn_refused_fields(
        self, body: Mapping[str, Any], outcome: _Outcome, required: frozenset[str]
    ) -> bool:
        """After a 400/422: stop sending the vendor fields the server named (or, on a 422 that names
        none, every vendor field we sent). True when something new was dropped, so a resend may work."""
        if outcome.extra.get("status") not in _FIELD_REFUSED:
            return False
        with self._dropped_lock:
            sent = [f for f in VENDOR_FIELDS if f in body and f not in self._dropped and f not in required]
            mentioned = [f for f in VENDOR_FIELDS if f in body and f in (outcome.error or "")]
            named = [f for f in sent if f in mentioned]
            if not mentioned and outcome.extra.get("status") == 422:
                named = sent
            if not named:
                return False
            self._dropped.update(named)
        logger.warning(
            "%s refused %s (%s); no longer sending %s",
            self.base_url,
            ", ".join(named),
            outcome.error,
            "it" if len(named) == 1 else "them",
        )
        return True

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        base, cap, retry_after_cap = self._backoff
        if retry_after is not None:
            # The server said when to come back; capped so a huge value cannot stall a worker.
            return min(retry_after, retry_after_cap)
        # Exponential backoff with jitter, so clips failing together do not retry in lockstep.
        return backoff_s(attempt, base, cap)

    def _attempt(self, body: bytes) -> _Outcome:
        try:
            resp = self._client.post(
                "chat/completions", content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TimeoutException as exc:
            return _Outcome(error=f"timed out after {self._timeout:g} s ({type(exc).__name__})", outage=True)
        except httpx.TransportError as exc:  # refused, reset, dropped mid-response
            return _Outcome(error=f"connection failed: {type(exc).__name__}: {exc}", outage=True)
        code = resp.status_code
        if code != 200:
            retryable = code in RETRY_STATUS or code >= 500
            return _Outcome(
                error=f"HTTP {code}: {_server_message(resp)}",
                retryable=retryable,
                outage=retryable,
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


def _required(transport: FrameTransport, clip: ClipInput) -> frozenset[str]:
    """Vendor fields this form cannot do without (dropping them would silently change the times)."""
    return frozenset(transport.request_fields(clip))


_OUTAGE = "outage"
_RETRY_AFTER = "retry_after"


def _failed(outcome: _Outcome, extra: dict[str, object]) -> Generation:
    if outcome.outage:
        extra = {**extra, _OUTAGE: True, _RETRY_AFTER: outcome.retry_after}
    return Generation(error=outcome.error, retryable=outcome.retryable, extra=extra)


def _raise_on_outage(gens: list[Generation]) -> list[Generation]:
    """Per-clip results, unless the server was down or overloaded for any of them: then nothing is known
    to be wrong with the clips and the caller waits the outage out (:class:`BackendUnavailable`)."""
    outages = [g for g in gens if g.extra.get(_OUTAGE)]
    if not outages:
        return gens
    waits = [float(w) for g in outages if isinstance(w := g.extra.get(_RETRY_AFTER), (int, float))]
    raise BackendUnavailable(
        f"{len(outages)} of {len(gens)} request(s) met an outage: {outages[0].error}",
        retry_after=max(waits) if waits else None,
    )
