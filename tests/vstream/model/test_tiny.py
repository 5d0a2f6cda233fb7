"""Tests for the tiny offline GLM-4.5V checkpoint (random weights: these check plumbing, never answers)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("torchvision")

from vstream.model.tiny import TINY_SPECIAL_TOKENS, make_tiny_checkpoint  # noqa: E402

PROMPT_TEXT = "Describe the video."
VIDEO = "<|begin_of_video|><|video|><|end_of_video|>"
IMAGE = "<|begin_of_image|><|image|><|end_of_image|>"
THINKING_ON = f"[gMASK]<sop><|user|>\n{VIDEO}{PROMPT_TEXT}<|assistant|>\n"
THINKING_OFF = f"[gMASK]<sop><|user|>\n{VIDEO}{PROMPT_TEXT}/nothink<|assistant|>\n<think></think>\n"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-glm45v"), seed=0)


@pytest.fixture(scope="session")
def processor(tiny_dir: Path) -> Any:
    return transformers.AutoProcessor.from_pretrained(tiny_dir, local_files_only=True)


@pytest.fixture(scope="session")
def model(tiny_dir: Path) -> Any:
    return transformers.AutoModelForImageTextToText.from_pretrained(tiny_dir, local_files_only=True).eval()


def _frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def _video_conversation(frames: np.ndarray, text: str = PROMPT_TEXT) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "video", "video": frames}, {"type": "text", "text": text}]}]


def _video_inputs(processor: Any, conversations: list[Any], metadata: list[dict[str, Any]]) -> Any:
    return processor.apply_chat_template(
        conversations,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"video_metadata": metadata, "do_sample_frames": False, "padding": True},
    )


def _render(processor: Any, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    return str(processor.apply_chat_template(messages, add_generation_prompt=True, **kwargs))


META_8 = {"total_num_frames": 8, "fps": 2.0, "frames_indices": list(range(8))}


def test_loads_offline_as_glm45v_architecture(tiny_dir: Path, processor: Any, model: Any) -> None:
    assert type(model).__name__ == "Glm4vMoeForConditionalGeneration"
    assert type(processor).__name__ == "Glm4vProcessor"
    assert type(processor.image_processor).__name__ == "Glm4vImageProcessor"
    assert type(processor.video_processor).__name__ == "Glm4vVideoProcessor"
    direct = transformers.Glm4vMoeForConditionalGeneration.from_pretrained(tiny_dir, local_files_only=True)
    assert type(direct) is type(model)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    text, vision = model.config.text_config, model.config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (64, 2, 4)
    assert (text.num_key_value_heads, text.moe_intermediate_size) == (2, 32)
    assert (text.n_routed_experts, text.num_experts_per_tok, text.n_shared_experts) == (4, 2, 1)
    rope = text.rope_parameters
    head_dim = text.head_dim
    assert head_dim >= 32  # vLLM's CPU attention takes head sizes 32..512
    assert text.use_qk_norm is False
    assert rope["partial_rotary_factor"] == 0.5
    assert sum(rope["mrope_section"]) == head_dim * rope["partial_rotary_factor"] / 2
    assert (vision.depth, vision.hidden_size, vision.out_hidden_size) == (2, 32, text.hidden_size)
    assert text.vocab_size == len(processor.tokenizer)
    assert processor.tokenizer.padding_side == "left"


def test_build_is_deterministic_given_seed(tmp_path: Path, tiny_dir: Path) -> None:
    same = make_tiny_checkpoint(tmp_path / "same", seed=0)
    other = make_tiny_checkpoint(tmp_path / "other", seed=1)
    weights = (tiny_dir / "model.safetensors").read_bytes()
    assert (same / "model.safetensors").read_bytes() == weights
    assert (other / "model.safetensors").read_bytes() != weights
    assert (same / "tokenizer.json").read_text() == (tiny_dir / "tokenizer.json").read_text()


@pytest.mark.parametrize("token", TINY_SPECIAL_TOKENS)
def test_special_token_is_one_id(processor: Any, token: str) -> None:
    tok = processor.tokenizer
    token_id = tok.convert_tokens_to_ids(token)
    assert tok.encode(token, add_special_tokens=False) == [token_id]
    assert tok.encode(f"a video{token}of cars", add_special_tokens=False).count(token_id) == 1


def test_special_token_ids_match_model_config(processor: Any, model: Any) -> None:
    tok, cfg = processor.tokenizer, model.config
    ids = [tok.convert_tokens_to_ids(t) for t in TINY_SPECIAL_TOKENS]
    assert len(set(ids)) == len(TINY_SPECIAL_TOKENS)
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image|>") == processor.image_token_id
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video|>") == processor.video_token_id
    assert cfg.image_start_token_id == tok.convert_tokens_to_ids("<|begin_of_image|>")
    assert cfg.image_end_token_id == tok.convert_tokens_to_ids("<|end_of_image|>")
    assert (
        cfg.video_start_token_id
        == tok.convert_tokens_to_ids("<|begin_of_video|>")
        == processor.video_start_id
    )
    assert cfg.video_end_token_id == tok.convert_tokens_to_ids("<|end_of_video|>") == processor.video_end_id
    assert tok.pad_token == tok.eos_token == "<|endoftext|>"
    stops = {tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|user|>", "<|observation|>")}
    assert set(model.generation_config.eos_token_id) == stops


def test_decode_keeps_think_and_box_markers(processor: Any) -> None:
    text = "<think>cars</think>\n<|begin_of_box|>[1,2,3,4]<|end_of_box|><|endoftext|>"
    ids = processor.tokenizer.encode(text, add_special_tokens=False)
    decoded = processor.tokenizer.decode(ids, skip_special_tokens=True)
    assert decoded == "<think>cars</think>\n<|begin_of_box|>[1,2,3,4]<|end_of_box|>"


def test_chat_template_thinking_switch(processor: Any) -> None:
    messages = _video_conversation(_frames(2, 28, 28))
    assert _render(processor, messages) == THINKING_ON
    assert _render(processor, messages, enable_thinking=True) == THINKING_ON
    off = _render(processor, messages, enable_thinking=False)
    assert off == THINKING_OFF
    assert off.replace("/nothink", "").replace("<think></think>\n", "") == THINKING_ON
    already = [{"role": "user", "content": "hi/nothink"}]
    assert _render(processor, already, enable_thinking=False).count("/nothink") == 1


def test_chat_template_system_parts_and_history(processor: Any) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You watch traffic."},
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "Cars?"}],
        },
        {"role": "assistant", "content": "<think>count them</think>Two cars."},
        {"role": "user", "content": "And people?"},
    ]
    expected = (
        "[gMASK]<sop><|system|>\nYou watch traffic."
        f"<|user|>\n{IMAGE}{VIDEO}Cars?"
        "<|assistant|>\n<think></think>\nTwo cars."
        "<|user|>\nAnd people?"
    )
    assert processor.apply_chat_template(messages) == expected
    assert _render(processor, messages) == expected + "<|assistant|>\n"
    last_turn = [*messages[:3]]
    assert processor.apply_chat_template(last_turn).endswith(
        "<|assistant|>\n<think>count them</think>\nTwo cars."
    )


def test_predecoded_frames_generate(processor: Any, model: Any) -> None:
    inputs = _video_inputs(processor, [_video_conversation(_frames(8, 224, 224))], [META_8])
    assert inputs["video_grid_thw"].tolist() == [[4, 16, 16]]
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    assert re.findall(r"<\|end_of_image\|>(\d+)", text) == [
        "0",
        "1",
        "2",
        "3",
    ]  # one timestamp per frame pair
    types = inputs["mm_token_type_ids"][0]
    assert (
        int((types == 2).sum())
        == 4 * 64
        == int((inputs["input_ids"][0] == model.config.image_token_id).sum())
    )
    assert int((types == 1).sum()) == 0
    direct = processor(
        text=[THINKING_ON],
        videos=[_frames(8, 224, 224)],
        video_metadata=[META_8],
        do_sample_frames=False,
        return_tensors="pt",
    )
    assert torch.equal(direct["input_ids"], inputs["input_ids"])
    out = model.generate(**inputs, max_new_tokens=8)
    new = out.shape[1] - inputs["input_ids"].shape[1]
    assert 1 <= new <= 8
    assert isinstance(processor.batch_decode(out[:, -new:], skip_special_tokens=True)[0], str)


def test_padded_batch_of_different_clips_generates(processor: Any, model: Any) -> None:
    short = {"total_num_frames": 40, "fps": 4.0, "frames_indices": [20, 24, 28, 32]}
    clips = [_frames(8, 224, 224), _frames(4, 168, 280, seed=1)]
    batch = _video_inputs(processor, [_video_conversation(c) for c in clips], [META_8, short])
    assert batch["video_grid_thw"].tolist() == [[4, 16, 16], [2, 12, 20]]
    mask = batch["attention_mask"]
    assert bool(mask[0].all()) and not bool(mask[1].all())
    assert bool(mask[1, -1]) and not bool(mask[1, 0])  # left padding
    assert re.findall(r"<\|end_of_image\|>(\d+)", processor.tokenizer.decode(batch["input_ids"][1])) == [
        "5",
        "7",
    ]
    single = _video_inputs(processor, [_video_conversation(clips[1])], [short])
    with torch.no_grad():
        batched_logits = model(**batch).logits[1, -1]
        single_logits = model(**single).logits[0, -1]
    torch.testing.assert_close(batched_logits, single_logits, atol=1e-4, rtol=1e-4)
    out = model.generate(**batch, max_new_tokens=8)
    assert out.shape[0] == 2 and out.shape[1] > batch["input_ids"].shape[1]
