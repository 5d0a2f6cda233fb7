"""OpenAIBackend against a real local HTTP server imitating vLLM (see fake_openai_server.py)."""

from __future__ import annotations

import base64
import io
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import av
import numpy as np
import pytest

from tests.vstream.model.fake_openai_server import FakeOpenAIServer, Reply
from vstream.config import ModelSettings
from vstream.encode import decode_jpeg
from vstream.model.base import BackendError, BackendUnavailable, ClipInput, ModelBackend, TaskSpec
from vstream.model.openai_backend import VENDOR_FIELDS, OpenAIBackend, format_seconds
from vstream.prompts import IMAGES_TIME_MARKS, VIDEO_TIME_MARKS
from vstream.retry import parse_retry_after

FAST: dict[str, Any] = {"backoff_base_s": 0.01, "backoff_max_s": 0.05}  # retries in milliseconds, not seconds


@pytest.fixture(scope="module")
def module_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def server(module_server: FakeOpenAIServer) -> FakeOpenAIServer:
    module_server.reset()
    return module_server


def backend_for(server: FakeOpenAIServer, **kw: Any) -> OpenAIBackend:
    return OpenAIBackend(server.base_url, server.model, **{"timeout": 5.0, **FAST, **kw})


def colour(i: int) -> tuple[int, int, int]:
    return ((40 * i) % 256, 255 - (30 * i) % 256, 90)


def make_clip(clip_id: str = "c0", n: int = 4, h: int = 56, w: int = 84, fps: float = 2.0) -> ClipInput:
    # One flat colour per frame: JPEG keeps it nearly exact, so decoded frames can be matched to originals.
    frames = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        frames[i] = colour(i)
    return ClipInput(clip_id, frames, tuple(i / fps for i in range(n)), fps)


def task(thinking: bool = False, max_new_tokens: int = 77) -> TaskSpec:
    return TaskSpec("caption", "Describe the video.", "h1", thinking=thinking, max_new_tokens=max_new_tokens)


def decode_data_url(url: str, prefix: str) -> list[np.ndarray]:
    assert url.startswith(prefix), url[:40]
    return [decode_jpeg(base64.b64decode(part)) for part in url[len(prefix) :].split(",")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_backend_satisfies_the_protocol(server: FakeOpenAIServer) -> None:
    backend: ModelBackend = backend_for(server)
    assert backend.model_id == server.model
    backend.close()


def test_from_settings_takes_the_model_settings() -> None:
    s = ModelSettings(
        type="openai",
        model="zai-org/GLM-4.5V-FP8",
        base_url="http://h:1/v1/",
        api_key="k",
        request_timeout_s=7,
        max_retries=5,
        max_concurrency=2,
        max_visual_tokens=999,
    )
    with OpenAIBackend.from_settings(s, frames_as="images") as b:
        assert (b.model_id, b.base_url, b.transport.name) == (
            "zai-org/GLM-4.5V-FP8",
            "http://h:1/v1",
            "images",
        )
        assert (b._timeout, b._max_retries, b._max_visual_tokens, b._pool._max_workers) == (7, 5, 999, 2)
        assert b._client.headers["Authorization"] == "Bearer k"


def decode_mp4(url: str) -> tuple[list[np.ndarray], float]:
    prefix = "data:video/mp4;base64,"
    assert url.startswith(prefix), url[:40]
    with av.open(io.BytesIO(base64.b64decode(url[len(prefix) :])), mode="r") as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, float(stream.average_rate or 0)


@pytest.mark.parametrize("thinking", [False, True])
def test_mp4_video_request_shape(server: FakeOpenAIServer, thinking: bool) -> None:
    clips = [make_clip("a", n=4, h=56, w=84, fps=2.0), make_clip("b", n=6, h=57, w=31, fps=1.0)]
    with backend_for(server, frames_as="video") as backend:
        gens = backend.generate(clips, task(thinking=thinking))
    assert [g.error for g in gens] == [None, None] and len(server.requests) == 2
    by_frames = {}
    for rec in server.requests:
        body = rec.body
        assert body["chat_template_kwargs"] == {"enable_thinking": thinking}
        assert "media_io_kwargs" not in body  # the container carries fps and frame count
        video, text = body["messages"][0]["content"]
        assert video["type"] == "video_url" and text == {"type": "text", "text": "Describe the video."}
        frames, fps = decode_mp4(video["video_url"]["url"])
        by_frames[len(frames)] = (frames, fps)
    for clip in clips:
        frames, fps = by_frames[len(clip.frames)]
        assert fps == clip.fps  # the server reads the clip's true rate from the container
        for i, f in enumerate(frames):  # every frame, its own size (odd sides too), in order
            assert f.shape == (clip.height, clip.width, 3)
            assert np.abs(f.astype(int) - colour(i)).max() <= 8
    assert [g.extra["transport"] for g in gens] == ["video", "video"]


@pytest.mark.parametrize("thinking", [False, True])
def test_video_kwargs_request_shape(server: FakeOpenAIServer, thinking: bool) -> None:
    clips = [make_clip("a", n=4, h=56, w=84, fps=2.0), make_clip("b", n=6, h=112, w=56, fps=4.0)]
    with backend_for(server, api_key="secret", frames_as="video-kwargs") as backend:
        gens = backend.generate(clips, task(thinking=thinking, max_new_tokens=77))
    assert len(server.requests) == 2  # one request per clip
    by_frames = {}
    for rec in server.requests:
        body = rec.body
        assert rec.headers["authorization"] == "Bearer secret"
        assert body["model"] == server.model and body["max_tokens"] == 77
        assert body["chat_template_kwargs"] == {"enable_thinking": thinking}
        assert body["skip_special_tokens"] is False and body["temperature"] == 0
        (message,) = body["messages"]
        video, text = message["content"]  # exactly one video part, then the prompt
        assert video["type"] == "video_url" and text == {"type": "text", "text": "Describe the video."}
        frames = decode_data_url(video["video_url"]["url"], "data:video/jpeg;base64,")
        by_frames[len(frames)] = (frames, body["media_io_kwargs"]["video"])
    for clip in clips:
        frames, meta = by_frames[len(clip.frames)]
        assert all(f.shape == (clip.height, clip.width, 3) for f in frames)
        for i, f in enumerate(frames):  # the right frames, in order
            assert np.abs(f.astype(int) - colour(i)).max() <= 3
        assert meta["fps"] == clip.fps and meta["do_sample_frames"] is False
        assert meta["frames_indices"] == [round(t * clip.fps) for t in clip.rel_timestamps]
        assert meta["num_frames"] == meta["total_num_frames"] == len(clip.frames)
    assert [g.error for g in gens] == [None, None]
    assert [g.visual_tokens for g in gens] == [2 * 2 * 3, 3 * 4 * 2]  # (T/2)*(H/28)*(W/28)
    assert (gens[0].prompt_tokens, gens[0].new_tokens, gens[0].text) == (321, 12, "ok")
    assert gens[0].extra["attempts"] == 1 and gens[0].extra["finish_reason"] == "stop"


def test_images_mode_puts_a_time_label_before_each_frame(server: FakeOpenAIServer) -> None:
    clip = ClipInput("c", make_clip(n=4).frames, (0.0, 0.5, 1.25, 12.0), 2.0)
    with backend_for(server, frames_as="images") as backend:
        (gen,) = backend.generate([clip], task())
    assert gen.error is None and gen.visual_tokens == 4 * 2 * 3
    (rec,) = server.requests
    parts = rec.body["messages"][0]["content"]
    assert [p["text"] for p in parts[0:8:2]] == ["t=0s", "t=0.5s", "t=1.25s", "t=12s"]
    assert all(p["type"] == "image_url" for p in parts[1:8:2])
    for i, p in enumerate(parts[1:8:2]):
        (frame,) = decode_data_url(p["image_url"]["url"], "data:image/jpeg;base64,")
        assert frame.shape == (56, 84, 3) and np.abs(frame.astype(int) - colour(i)).max() <= 3
    assert parts[8] == {"type": "text", "text": "Describe the video."} and len(parts) == 9
    assert "media_io_kwargs" not in rec.body


def test_images_mode_words_the_time_marks_for_images(server: FakeOpenAIServer) -> None:
    prompt = f"You are watching a 4-second video clip. {VIDEO_TIME_MARKS}\nDescribe it."
    spec = TaskSpec("caption", prompt, "h", max_new_tokens=5)
    with backend_for(server, frames_as="images") as backend:
        backend.generate([make_clip()], spec)
    with backend_for(server, frames_as="video") as backend:
        backend.generate([make_clip()], spec)
    images_text = server.requests[0].body["messages"][0]["content"][-1]["text"]
    video_text = server.requests[1].body["messages"][0]["content"][-1]["text"]
    assert "pair" not in images_text and IMAGES_TIME_MARKS in images_text
    assert video_text == prompt


def test_every_task_template_has_the_video_time_marks_sentence() -> None:
    from vstream.analysis.tasks import template
    from vstream.vocabulary import TASKS

    assert all(VIDEO_TIME_MARKS in template(t) for t in TASKS)


def test_extra_body_is_merged_into_each_request(server: FakeOpenAIServer) -> None:
    with backend_for(server, extra_body={"repetition_penalty": 1.1, "top_k": 2}) as backend:
        backend.generate([make_clip()], task())
    body = server.requests[0].body
    assert (body["repetition_penalty"], body["top_k"]) == (1.1, 2)


def test_concurrency_limit_and_result_order(server: FakeOpenAIServer) -> None:
    def frame_count(body: dict[str, Any]) -> str:
        url = body["messages"][0]["content"][0]["video_url"]["url"]
        return str(url.count(","))  # one comma after "base64", then one between each two frames

    server.script(*[Reply.ok(frame_count, delay=0.25)] * 7)
    clips = [make_clip(f"c{i}", n=2 * (i + 1), h=28, w=28) for i in range(7)]
    with backend_for(server, max_concurrency=3, frames_as="video-kwargs") as backend:
        start = time.monotonic()
        gens = backend.generate(clips, task())
        elapsed = time.monotonic() - start
    assert len(server.requests) == 7
    assert server.max_in_flight == 3  # the limit is reached and never exceeded
    assert [g.text for g in gens] == [str(2 * (i + 1)) for i in range(7)]  # results in clip order
    assert elapsed >= 0.7  # 7 requests of 0.25 s, 3 at a time: at least 3 rounds


def test_retry_on_500_then_ok(server: FakeOpenAIServer) -> None:
    server.script(Reply.error(500, "engine hiccup"), Reply.error(503, "loading"), Reply.ok("fine"))
    with backend_for(server, max_retries=3) as backend:
        (gen,) = backend.generate([make_clip()], task())
    assert (gen.error, gen.text, gen.extra["attempts"]) == (None, "fine", 3)
    assert len(server.requests) == 3


def test_429_retry_after_is_honoured(server: FakeOpenAIServer) -> None:
    server.script(Reply.error(429, "busy", headers={"Retry-After": "0.6"}), Reply.ok("fine"))
    with backend_for(server) as backend:
        (gen,) = backend.generate([make_clip()], task())
    assert gen.text == "fine"
    first, second = server.requests
    assert second.at - first.at >= 0.55  # our own backoff would have retried after ~0.01 s


def test_429_retry_after_is_capped(server: FakeOpenAIServer) -> None:
    server.script(Reply.error(429, "busy", headers={"Retry-After": "3600"}), Reply.ok("fine"))
    with backend_for(server, retry_after_max_s=0.3) as backend:
        start = time.monotonic()
        (gen,) = backend.generate([make_clip()], task())
    assert gen.text == "fine" and time.monotonic() - start < 3
    first, second = server.requests
    assert second.at - first.at >= 0.25


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_client_errors_are_not_retried(server: FakeOpenAIServer, status: int) -> None:
    server.script(Reply.error(status, f"the server says no ({status})"), Reply.ok("must not be reached"))
    with backend_for(server, max_retries=3) as backend:
        (gen,) = backend.generate([make_clip()], task())
    assert gen.retryable is False and gen.text == ""
    assert gen.error is not None and gen.error.startswith(f"HTTP {status}: ")
    assert f"the server says no ({status})" in gen.error
    assert len(server.requests) == 1


def test_timeouts_after_all_retries_are_an_outage(server: FakeOpenAIServer) -> None:
    server.script(*[Reply.slow(1.0)] * 3)
    with backend_for(server, timeout=0.25, max_retries=2) as backend:
        start = time.monotonic()
        with pytest.raises(BackendUnavailable, match=r"timed out after 0\.25 s"):
            backend.generate([make_clip()], task())
        elapsed = time.monotonic() - start
    assert len(server.requests) == 3
    assert elapsed < 2.5  # three 0.25 s timeouts plus tiny backoffs, never the server's 1 s


def test_persistent_server_errors_are_an_outage(server: FakeOpenAIServer) -> None:
    server.script(*[Reply.error(500, "still broken")] * 5)
    broken = pytest.raises(BackendUnavailable, match="still broken")
    with backend_for(server, max_retries=2) as backend, broken:
        backend.generate([make_clip()], task())
    assert len(server.requests) == 3


def test_429_storm_is_an_outage_with_the_servers_retry_after(server: FakeOpenAIServer) -> None:
    server.script(*[Reply.error(429, "busy", headers={"Retry-After": "0.05"})] * 2)
    with backend_for(server, max_retries=1) as backend, pytest.raises(BackendUnavailable) as info:
        backend.generate([make_clip()], task())
    assert info.value.retry_after is not None and 0 < info.value.retry_after <= 0.05


def test_text_generation_reports_an_outage_per_prompt_without_raising() -> None:
    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "glm-4.5v", max_retries=0, **FAST)
    with backend:
        (gen,) = backend.generate_text(["summarise"], max_new_tokens=5)
    assert gen.retryable is True and "connection failed" in str(gen.error)


@pytest.mark.parametrize(
    ("bad", "why"),
    [(Reply.garbage(), "invalid JSON in response"), (Reply.drop(), "RemoteProtocolError")],
    ids=["garbage-json", "connection-drop"],
)
def test_garbage_and_dropped_responses_are_retried(server: FakeOpenAIServer, bad: Reply, why: str) -> None:
    server.script(bad, bad, Reply.ok("recovered"))
    with backend_for(server, max_retries=0) as backend:
        try:
            (failed,) = backend.generate([make_clip()], task())
            error = str(failed.error)
            assert failed.retryable is True
        except BackendUnavailable as exc:  # a dropped connection is the server's trouble, not the clip's
            error = str(exc)
    assert why in error
    with backend_for(server, max_retries=1) as backend:
        (gen,) = backend.generate([make_clip()], task())
    assert (gen.error, gen.text) == (None, "recovered")
    assert len(server.requests) == 3


def test_endpoint_down_raises_backend_unavailable() -> None:
    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "glm-4.5v", max_retries=2, **FAST)
    with backend, pytest.raises(BackendUnavailable, match=r"2 of 2 request\(s\) .*connection failed"):
        backend.generate([make_clip("a"), make_clip("b")], task())


def test_check_passes_when_the_model_is_served(server: FakeOpenAIServer) -> None:
    server.served_models = ["other", server.model]
    with backend_for(server) as backend:
        assert backend.check() == ["other", server.model]


def test_check_raises_when_the_model_is_missing(server: FakeOpenAIServer) -> None:
    server.served_models = ["zai-org/GLM-4.1V-9B-Thinking"]
    with (
        backend_for(server) as backend,
        pytest.raises(BackendError, match=r"does not serve model 'glm-4\.5v'"),
    ):
        backend.check()


def test_check_raises_when_the_server_is_down() -> None:
    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "glm-4.5v")
    with backend, pytest.raises(BackendError, match="unreachable"):
        backend.check()


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_is_reattached_as_think_block(server: FakeOpenAIServer, field: str) -> None:
    answer = "<|begin_of_box|>[1,2,3,4]<|end_of_box|>"
    server.script(Reply.ok(answer, reasoning="Looking at frame 2.", reasoning_field=field))
    with backend_for(server) as backend:
        (gen,) = backend.generate([make_clip()], task(thinking=True))
    assert gen.text == f"<think>Looking at frame 2.</think>{answer}"


def test_answer_filed_as_reasoning_with_thinking_off_stays_the_answer(server: FakeOpenAIServer) -> None:
    server.script(Reply.ok("", reasoning="A person walks in."))
    with backend_for(server) as backend:
        (gen,) = backend.generate([make_clip()], task(thinking=False))
    assert gen.text == "A person walks in."


def test_over_budget_and_bad_frame_counts_are_refused_without_a_request(server: FakeOpenAIServer) -> None:
    fits = make_clip("fits", n=2, h=224, w=224)  # 1 * 8 * 8 = 64 tokens: exactly the budget
    over = make_clip("over", n=4, h=224, w=224)  # 2 * 8 * 8 = 128 tokens
    odd, single = make_clip("odd", n=3), make_clip("one", n=1)
    with backend_for(server, max_visual_tokens=64) as backend:
        gens = backend.generate([fits, over, odd, single], task())
    assert gens[0].error is None and gens[0].visual_tokens == 64
    assert "128 visual tokens" in str(gens[1].error) and gens[1].visual_tokens == 128
    assert "even number of frames" in str(gens[2].error) and "even number of frames" in str(gens[3].error)
    assert all(g.retryable is False for g in gens[1:])
    assert len(server.requests) == 1  # only the clip within budget was sent


def test_generate_after_close_returns_errors(server: FakeOpenAIServer) -> None:
    backend = backend_for(server)
    backend.close()
    (gen,) = backend.generate([make_clip()], task())
    assert gen.error is not None and gen.retryable is True
    assert backend._client.is_closed and not server.requests


def test_helpers() -> None:
    assert [format_seconds(t) for t in (0.0, 0.5, 2.0, 1 / 3)] == ["0", "0.5", "2", "0.333"]
    assert parse_retry_after("2") == 2.0 and parse_retry_after(None) is None
    assert parse_retry_after("soon") is None and parse_retry_after("-4") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: now


def test_text_generation_sends_a_text_only_chat_and_retries(server: FakeOpenAIServer) -> None:
    server.script(Reply.error(500), Reply.ok("a summary"), Reply.ok("another"))
    with backend_for(server) as backend:
        gens = backend.generate_text(["summarise A", "summarise B"], max_new_tokens=50, thinking=False)
    assert sorted(g.text for g in gens) == ["a summary", "another"]
    bodies = [r.body for r in server.requests]
    assert len(bodies) == 3, "the 500 was retried"
    assert all(isinstance(b["messages"][0]["content"], str) and b["max_tokens"] == 50 for b in bodies)
    assert all(b["chat_template_kwargs"] == {"enable_thinking": False} for b in bodies)


def test_a_vendor_field_the_server_names_is_dropped_once_and_for_all(server: FakeOpenAIServer) -> None:
    server.script(Reply.error(422, "extra inputs are not permitted: skip_special_tokens"), Reply.ok("a"))
    with backend_for(server) as backend:
        gens = backend.generate([make_clip()], task()) + backend.generate([make_clip()], task())
        assert backend.dropped_fields == {"skip_special_tokens"}
    assert [g.text for g in gens] == ["a", "ok"]
    first, second, third = (r.body for r in server.requests)
    assert "skip_special_tokens" in first and "chat_template_kwargs" in first
    assert "skip_special_tokens" not in second and "skip_special_tokens" not in third
    assert second["chat_template_kwargs"] == {"enable_thinking": False}  # only the named field goes


def test_a_422_naming_no_field_drops_every_vendor_field(server: FakeOpenAIServer) -> None:
    server.script(Reply.error(422, "request body does not validate"), Reply.ok("fine"))
    with backend_for(server, return_token_ids=True) as backend:
        (gen,) = backend.generate([make_clip()], task())
    assert gen.text == "fine"
    assert not set(VENDOR_FIELDS) & set(server.requests[1].body)


def test_a_422_naming_only_a_needed_field_drops_nothing_else(server: FakeOpenAIServer) -> None:
    server.script(Reply.error(422, "Unexpected fields in the request: {'media_io_kwargs'}"))
    with backend_for(server, frames_as="video-kwargs") as backend:
        (gen,) = backend.generate([make_clip()], task())
        assert backend.dropped_fields == set()  # chat_template_kwargs was not what it refused
    assert gen.retryable is False and len(server.requests) == 1


def test_a_field_the_form_needs_is_not_dropped(server: FakeOpenAIServer) -> None:
    msg = "Per-request media_io_kwargs are disabled by default (parameter=media_io_kwargs)"
    server.script(Reply.error(400, msg), Reply.ok("must not be reached"))
    with backend_for(server, frames_as="video-kwargs") as backend:
        (gen,) = backend.generate([make_clip()], task())
        assert backend.dropped_fields == set()
    assert gen.retryable is False and "media_io_kwargs" in str(gen.error)
    assert len(server.requests) == 1


def test_probe_keeps_the_first_frame_form_the_server_answers(server: FakeOpenAIServer) -> None:
    def refuse_videos(body: dict[str, Any]) -> Reply:
        return Reply.error(400, "cannot read video") if "video_url" in json.dumps(body) else Reply.ok("x")

    server.respond_with(refuse_videos)
    with backend_for(server, frames_as="auto") as backend:
        assert backend.transport.name == "video"  # before the probe: the first preference
        assert backend.probe_frames() == "images"
        assert backend.transport.name == "images"
    probes = [r.body for r in server.requests]
    assert len(probes) == 3 and all(b["max_tokens"] == 1 for b in probes)
    assert "media_io_kwargs" in probes[1]  # video-kwargs was tried second


def test_probe_fails_with_one_line_when_no_form_works(server: FakeOpenAIServer) -> None:
    server.script(*[Reply.error(400, "no vision here")] * 3)
    with backend_for(server) as backend, pytest.raises(BackendError, match="takes none of the frame forms"):
        backend.probe_frames()


def test_prompt_token_ids_are_kept_when_asked(server: FakeOpenAIServer) -> None:
    server.script(Reply.ok("a", prompt_token_ids=[1, 2, 3]))
    with backend_for(server, return_token_ids=True) as backend:
        (gen,) = backend.generate([make_clip()], task())
    assert server.requests[0].body["return_token_ids"] is True
    assert gen.extra["prompt_token_ids"] == [1, 2, 3]
