"""The OpenAI backend against the REAL vLLM 0.32 (CPU build) that deploy/local/vllm.sh starts as shipped (no
--trust-request-mm-kwargs). The checkpoint is the tiny random-weight one: answers are noise; what is checked
is the plumbing -- the prompt vLLM builds, token for token, against the in-process Glm4vProcessor's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.media_fixtures import sample
from tests.vstream.model.real_servers import VllmServer
from vstream.cli import main
from vstream.config import ModelSettings
from vstream.model.base import ClipInput, TaskSpec
from vstream.model.factory import make_backend
from vstream.model.openai_backend import OpenAIBackend
from vstream.model.transformers_backend import build_inputs
from vstream.prompts import IMAGES_TIME_MARKS, VIDEO_TIME_MARKS

pytestmark = pytest.mark.integration

PROMPT = f"You are watching a video clip. {VIDEO_TIME_MARKS}\nDescribe it."


@pytest.fixture(scope="module")
def processor(vllm: VllmServer) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(vllm.checkpoint, local_files_only=True)


def clip(n: int, fps: float, h: int, w: int) -> ClipInput:
    frames = np.random.default_rng(n).integers(0, 255, (n, h, w, 3), dtype=np.uint8)
    return ClipInput(f"c{n}", frames, tuple(i / fps for i in range(n)), fps)


def backend(vllm: VllmServer, frames: str) -> OpenAIBackend:
    return OpenAIBackend(vllm.base_url, vllm.model, timeout=300, frames_as=frames, return_token_ids=True)


def time_marks(processor: Any, ids: list[int]) -> list[str]:
    """The text between each image's end and the next image (GLM's second marks)."""
    tok = processor.tokenizer
    end = tok.convert_tokens_to_ids("<|end_of_image|>")
    stops = set(tok.convert_tokens_to_ids(["<|begin_of_image|>", "<|end_of_video|>"]))
    marks: list[list[int]] = []
    current: list[int] | None = None
    for i in ids:
        if i == end:
            current = []
            marks.append(current)
        elif current is not None and i in stops:
            current = None
        elif current is not None:
            current.append(i)
    return [tok.decode(m) for m in marks]


@pytest.mark.parametrize("thinking", [False, True], ids=["thinking-off", "thinking-on"])
@pytest.mark.parametrize(
    ("n", "fps", "h", "w"), [(16, 2.0, 224, 224), (6, 1.0, 140, 253)], ids=["2fps-224", "1fps-odd-width"]
)
def test_video_form_prompt_equals_in_process_tokens(
    vllm: VllmServer, processor: Any, thinking: bool, n: int, fps: float, h: int, w: int
) -> None:
    c = clip(n, fps, h, w)
    task = TaskSpec("caption", PROMPT, "h", thinking=thinking, max_new_tokens=4)
    expected = build_inputs(processor, [c], task)["input_ids"][0].tolist()
    with backend(vllm, "video") as b:
        (gen,) = b.generate([c], task)
    assert gen.error is None and gen.extra["transport"] == "video"
    assert gen.extra["prompt_token_ids"] == expected  # time marks, visual tokens, template: all equal
    assert time_marks(processor, expected) == [str(int(2 * k / fps)) for k in range(n // 2)]
    assert gen.text.startswith("<think>") == thinking


def test_video_kwargs_is_refused_as_shipped_and_auto_picks_video(vllm: VllmServer) -> None:
    with backend(vllm, "video-kwargs") as b:
        (gen,) = b.generate([clip(4, 2.0, 112, 112)], TaskSpec("caption", PROMPT, "h", max_new_tokens=2))
    assert gen.retryable is False and "HTTP 400" in str(gen.error) and "media_io_kwargs" in str(gen.error)
    settings = ModelSettings(type="openai", model=vllm.model, base_url=vllm.base_url, frames="auto")
    auto = make_backend(settings)
    try:
        assert isinstance(auto, OpenAIBackend) and auto.transport.name == "video"
        assert auto.dropped_fields == set()  # vLLM takes every vendor field we send
    finally:
        auto.close()


@pytest.mark.parametrize("thinking", [False, True], ids=["thinking-off", "thinking-on"])
def test_images_form_is_selectable_and_times_each_frame(
    vllm: VllmServer, processor: Any, thinking: bool
) -> None:
    settings = ModelSettings(type="openai", model=vllm.model, base_url=vllm.base_url, frames="images")
    c = clip(4, 2.0, 112, 112)
    with OpenAIBackend.from_settings(settings, return_token_ids=True) as b:
        (gen,) = b.generate([c], TaskSpec("caption", PROMPT, "h", thinking=thinking, max_new_tokens=4))
    assert gen.error is None and gen.extra["transport"] == "images"
    text = processor.tokenizer.decode(gen.extra["prompt_token_ids"])
    assert [f"t={t}s" in text for t in ("0", "0.5", "1", "1.5")] == [True] * 4
    assert text.count("<|begin_of_image|>") == 4 and "<|begin_of_video|>" not in text
    assert IMAGES_TIME_MARKS in text and "pair" not in text
    assert text.endswith("<think></think>\n") != thinking  # thinking off pre-fills an empty think block


def test_every_clip_of_a_60s_video_gets_an_answer_in_the_default_mode(
    vllm: VllmServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    video = sample(tmp_path, seconds=60, width=320, height=180)
    monkeypatch.setenv("VSTREAM_MODEL__MODEL", vllm.model)
    monkeypatch.setenv("VSTREAM_MODEL__MAX_NEW_TOKENS", "16")  # random weights: long answers prove nothing
    monkeypatch.delenv("VSTREAM_MODEL__FRAMES", raising=False)  # the default: auto
    rc = main(["analyze", str(video), "--task", "caption", "--model", f"openai:{vllm.base_url}", "--json"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    clips = [r for r in records if r["type"] == "clip"]
    assert rc == 0
    assert len(clips) >= 7 and clips[-1]["t_end"] >= 59
    # "raw" is there only when the model answered (a clip without an answer has just ok=false and error)
    assert all("raw" in r and r["model"] == vllm.model and r["visual_tokens"] > 0 for r in clips)
