"""TransformersBackend on the tiny random-weight GLM-4.5V checkpoint (CPU): plumbing, never answers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("torchvision")

from vstream.analysis.tasks import render  # noqa: E402
from vstream.config import ModelSettings  # noqa: E402
from vstream.model.base import BackendError, ClipInput, TaskSpec  # noqa: E402
from vstream.model.loading import tiny_checkpoint_dir  # noqa: E402
from vstream.model.transformers_backend import TransformersBackend, build_inputs  # noqa: E402

FPS = 2.0
# (frames, height, width): 224x224, 448x252 (landscape) and 252x448 (portrait) as width x height.
SHAPES = [(2, 224, 224), (8, 448, 252), (16, 252, 448)]
TIMESTAMP = re.compile(r"<\|end_of_image\|>(\d+)")
INDEX_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "video_grid_thw")


def make_clip(frames: int, height: int, width: int, *, seed: int = 0, step: float = 0.5) -> ClipInput:
    data = np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    return ClipInput(
        f"clip-{frames}-{height}x{width}-{seed}", data, tuple(k * step for k in range(frames)), FPS
    )


def expected_visual_tokens(frames: int, height: int, width: int) -> int:
    return (frames // 2) * (height // 28) * (width // 28)


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vstream-cache")


@pytest.fixture(scope="session")
def backend(cache: Path) -> Any:
    b = TransformersBackend("tiny", cache_dir=cache)
    yield b
    b.close()


@pytest.fixture(scope="session")
def task() -> TaskSpec:
    return render("caption", duration_s=8, thinking=False, max_new_tokens=6)


def direct_inputs(processor: Any, clip: ClipInput, task: TaskSpec) -> Any:
    """What Glm4vProcessor alone makes of the same frames and metadata (no vstream code involved)."""
    messages = [
        {
            "role": "user",
            "content": [{"type": "video", "video": clip.frames}, {"type": "text", "text": task.prompt}],
        }
    ]
    prompt = processor.apply_chat_template(
        messages, add_generation_prompt=True, enable_thinking=task.thinking
    )
    meta = {"total_num_frames": len(clip.frames), "fps": FPS, "frames_indices": list(range(len(clip.frames)))}
    return processor(
        text=[prompt],
        videos=[clip.frames],
        video_metadata=[meta],
        do_sample_frames=False,
        return_tensors="pt",
    )


@pytest.mark.parametrize("thinking", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_inputs_are_token_identical_to_processor_alone(
    backend: Any, shape: tuple[int, int, int], thinking: bool
) -> None:
    clip = make_clip(*shape)
    task = render("caption", duration_s=shape[0] / FPS, thinking=thinking)
    ours = build_inputs(backend.processor, [clip], task)
    theirs = direct_inputs(backend.processor, clip, task)
    assert set(ours.keys()) == {*INDEX_KEYS, "pixel_values_videos"}
    for key in INDEX_KEYS:
        assert torch.equal(ours[key], theirs[key]), key
    assert torch.equal(ours["pixel_values_videos"], theirs["pixel_values_videos"])
    frames, height, width = shape
    assert ours["video_grid_thw"].tolist() == [[frames // 2, height // 14, width // 14]]
    assert int((ours["mm_token_type_ids"] == 2).sum()) == expected_visual_tokens(*shape)
    decoded = backend.processor.tokenizer.decode(ours["input_ids"][0])
    # 0.5 s sampling at fps 2: frame pair k starts at second k, printed as a whole number.
    assert TIMESTAMP.findall(decoded) == [str(k) for k in range(frames // 2)]


def test_timestamps_follow_clip_relative_times(backend: Any, task: TaskSpec) -> None:
    frames = make_clip(6, 224, 224).frames
    clip = ClipInput("gappy", frames, (0.0, 0.5, 4.0, 4.5, 9.5, 10.0), FPS)
    decoded = backend.processor.tokenizer.decode(
        build_inputs(backend.processor, [clip], task)["input_ids"][0]
    )
    assert TIMESTAMP.findall(decoded) == ["0", "4", "9"]


def test_batch_rows_equal_single_clip_inputs(backend: Any, task: TaskSpec) -> None:
    clips = [make_clip(*shape, seed=i) for i, shape in enumerate(SHAPES)]
    batch = build_inputs(backend.processor, clips, task)
    singles = [build_inputs(backend.processor, [clip], task) for clip in clips]
    width = batch["input_ids"].shape[1]
    for row, single in enumerate(singles):
        n = single["input_ids"].shape[1]
        assert bool(batch["attention_mask"][row, : width - n].eq(0).all())  # left padding
        for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
            assert torch.equal(batch[key][row, width - n :], single[key][0]), key
    for key in ("pixel_values_videos", "video_grid_thw"):
        assert torch.equal(batch[key], torch.cat([s[key] for s in singles])), key


def test_thinking_switch_changes_prompt_as_template_defines(backend: Any) -> None:
    clip = make_clip(2, 224, 224)
    tok = backend.processor.tokenizer
    on, off = (
        tok.decode(
            build_inputs(backend.processor, [clip], render("caption", duration_s=1, thinking=t))["input_ids"][
                0
            ]
        )
        for t in (True, False)
    )
    prompt = render("caption", duration_s=1).prompt
    assert on.endswith(f"<|end_of_video|>{prompt}<|assistant|>\n")
    assert "/nothink" not in on and "<think>" not in on
    assert off.endswith(f"<|end_of_video|>{prompt}/nothink<|assistant|>\n<think></think>\n")
    assert off.replace("/nothink", "").replace("<think></think>\n", "") == on


def test_batch_generates_and_matches_unbatched(backend: Any, task: TaskSpec) -> None:
    clips = [make_clip(*shape, seed=i) for i, shape in enumerate(SHAPES)]
    batched = backend.generate(clips, task)
    assert len(batched) == len(clips)
    for gen, clip, shape in zip(batched, clips, SHAPES, strict=True):
        assert gen.error is None, gen.error
        assert 1 <= gen.new_tokens <= task.max_new_tokens
        assert gen.visual_tokens == expected_visual_tokens(*shape)
        assert gen.prompt_tokens > gen.visual_tokens and gen.seconds > 0
        assert gen.extra["clip_id"] == clip.clip_id and gen.extra["batch_size"] == len(clips)
        alone = backend.generate([clip], task)[0]
        assert (alone.text, alone.new_tokens, alone.prompt_tokens) == (
            gen.text,
            gen.new_tokens,
            gen.prompt_tokens,
        )
    # Random weights answer every clip alike, so also check the next-token logits, which do see the clip.
    batch = build_inputs(backend.processor, clips, task)
    with torch.inference_mode():
        logits = backend.model(**batch).logits[:, -1]
        for row, clip in enumerate(clips):
            single = backend.model(**build_inputs(backend.processor, [clip], task)).logits[0, -1]
            torch.testing.assert_close(logits[row], single, atol=1e-4, rtol=1e-4)


def test_bad_clips_fail_alone(backend: Any, task: TaskSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "max_visual_tokens", 600)
    good = make_clip(2, 224, 224)
    clips = [
        good,
        make_clip(1, 224, 224),
        make_clip(3, 224, 224),
        make_clip(16, 252, 448),
        make_clip(8, 448, 252),
    ]
    gens = backend.generate(clips, task)
    assert [g.error is None for g in gens] == [True, False, False, False, True]
    assert "1 frames" in str(gens[1].error) and "3 frames" in str(gens[2].error)
    assert "1152 visual tokens" in str(gens[3].error) and "600" in str(gens[3].error)
    assert not any(g.retryable for g in gens[1:4])
    assert gens[0].extra["batch_size"] == 2 and gens[0].new_tokens >= 1 and gens[4].new_tokens >= 1


def test_failed_batch_retries_each_clip_alone(
    backend: Any, task: TaskSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = backend.model.generate

    def flaky(**inputs: Any) -> Any:
        # Fails like an OOM for any batch, and always for the 8-frame clip (grid t == 4).
        if inputs["input_ids"].shape[0] > 1 or int(inputs["video_grid_thw"][0, 0]) == 4:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(**inputs)

    monkeypatch.setattr(backend.model, "generate", flaky)
    gens = backend.generate([make_clip(*shape) for shape in SHAPES], task)
    assert [g.error is None for g in gens] == [True, False, True]
    assert gens[1].retryable and "out of memory" in str(gens[1].error)
    assert gens[0].extra["alone"] is True and gens[2].new_tokens >= 1


def test_decode_keeps_glm_markers_and_drops_stop_and_pad(backend: Any) -> None:
    tok = backend.processor.tokenizer
    body = "<think>cars</think>\n<|begin_of_box|>[1,2,3,4]<|end_of_box|>"
    ids = tok.encode(body, add_special_tokens=False)
    text, count = backend._decode([*ids, tok.eos_token_id, tok.pad_token_id, tok.pad_token_id])
    assert (text, count) == (body, len(ids) + 1)
    assert backend._decode(ids) == (body, len(ids))


def test_missing_local_dir_raises_with_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(BackendError, match=re.escape(str(missing))):
        TransformersBackend(str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match=r"config\.json"):
        TransformersBackend(str(tmp_path / "empty"))
    with pytest.raises(BackendError, match="neither"):
        TransformersBackend("not a model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # and no network: an uncached hub id fails fast and clearly
    with pytest.raises(BackendError, match=r"'zai-org/no-such-model' \(HF_HUB_OFFLINE is set"):
        TransformersBackend("zai-org/no-such-model")


def test_from_settings_uses_cache_and_close(
    cache: Path, task: TaskSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VSTREAM_CACHE", str(cache))
    built = tiny_checkpoint_dir(cache)
    assert built.parent == cache / "models" and built.name.startswith("tiny-")
    stamp = (built / "config.json").stat().st_mtime_ns
    b = TransformersBackend.from_settings(ModelSettings(model="tiny", max_new_tokens=2))
    assert (built / "config.json").stat().st_mtime_ns == stamp  # built once, reused
    gen = b.generate([make_clip(2, 224, 224)], task)[0]
    assert gen.error is None and 1 <= gen.new_tokens <= 2
    b.close()
    with pytest.raises(BackendError, match="closed"):
        b.generate([make_clip(2, 224, 224)], task)


def test_text_generation_runs_the_same_model_on_text_prompts(backend: TransformersBackend) -> None:
    gens = backend.generate_text(
        ["Summarise: a person walks.", "Summarise the lecture about energy."], max_new_tokens=4
    )
    assert len(gens) == 2 and all(g.error is None and 1 <= g.new_tokens <= 4 for g in gens)
    assert gens[0].prompt_tokens < gens[1].prompt_tokens
