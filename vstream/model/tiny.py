"""A tiny, randomly initialised GLM-4.5V checkpoint built fully offline.

`make_tiny_checkpoint` writes a directory that `AutoProcessor.from_pretrained` and
`AutoModelForImageTextToText.from_pretrained` load like ``zai-org/GLM-4.5V``: the same model class
(`Glm4vMoeForConditionalGeneration`: MoE text decoder with M-RoPE plus a vision tower), the real
`Glm4vProcessor` with the default `Glm4vImageProcessor` / `Glm4vVideoProcessor`, a byte-level BPE tokenizer
carrying GLM's special tokens, and a GLM-V style chat template with the ``enable_thinking`` switch.

The weights are random. The checkpoint proves plumbing (pre-processing, prompt layout, M-RoPE, batching,
generation, decoding), never answers: whatever it generates is noise.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    Glm4vImageProcessor,
    Glm4vMoeConfig,
    Glm4vMoeForConditionalGeneration,
    Glm4vProcessor,
    Glm4vVideoProcessor,
    PreTrainedTokenizerFast,
)

__all__ = [
    "TINY_BPE_VOCAB_SIZE",
    "TINY_CHAT_TEMPLATE",
    "TINY_SPECIAL_TOKENS",
    "TINY_TEXT_CONFIG",
    "TINY_VISION_CONFIG",
    "make_tiny_checkpoint",
    "tiny_corpus",
]

# GLM's special tokens, in GLM-4.5V's id order (151329 ... 151364 there, appended after the BPE vocab here).
TINY_SPECIAL_TOKENS: list[str] = [
    "<|endoftext|>",
    "[MASK]",
    "[gMASK]",
    "[sMASK]",
    "<sop>",
    "<eop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
    "<think>",
    "</think>",
    "/nothink",
    "<|begin_of_box|>",
    "<|end_of_box|>",
    "<|image|>",
    "<|video|>",
]

# Markers callers parse out of generated text: single ids, kept by ``decode(skip_special_tokens=True)``.
_VISIBLE_MARKERS = frozenset({"<think>", "</think>", "/nothink", "<|begin_of_box|>", "<|end_of_box|>"})
_EOS = "<|endoftext|>"
# GLM-4.5V stops on end-of-text and on the start of a user or observation turn.
_STOP_TOKENS = ("<|endoftext|>", "<|user|>", "<|observation|>")

TINY_BPE_VOCAB_SIZE = 1024  # upper bound for byte alphabet (256) + merges; the small corpus stops it near 600

TINY_TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,  # the dense MLP of the first (non-MoE) layer
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "moe_intermediate_size": 32,
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
    "n_shared_experts": 1,
    "first_k_dense_replace": 1,
    "n_group": 1,
    "topk_group": 1,
    "max_position_embeddings": 65536,
    "attention_bias": True,
    # An explicit head_dim as GLM-4.5V's own config has (128 there, wider than hidden/heads here): vLLM's CPU
    # attention only takes head sizes 32..512, and the same checkpoint must serve both backends.
    "head_dim": 32,
    # GLM-4.5V's text_config says use_qk_norm false; vLLM's GLM-4.5 decoder reads it, transformers ignores it.
    "use_qk_norm": False,
    # head_dim 32, partial rotary 0.5 -> 16 rotary dims -> 8 frequencies over (t, h, w), like [8, 12, 12].
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "partial_rotary_factor": 0.5,
        "mrope_section": [2, 3, 3],
    },
}

TINY_VISION_CONFIG: dict[str, Any] = {
    "depth": 2,
    "hidden_size": 32,
    "num_heads": 2,
    "intermediate_size": 64,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "spatial_merge_size": 2,
    "image_size": 336,
    "out_hidden_size": TINY_TEXT_CONFIG["hidden_size"],
}

# GLM-V chat template (same rendered layout as GLM-4.5V's official template for system/user/assistant/tool
# turns and the generation prompt; tool definitions and tool calls are left out). Thinking is on unless
# ``enable_thinking`` is passed and false: then ``/nothink`` ends every user turn (unless already there)
# and the generation prompt pre-fills an empty ``<think></think>``.
TINY_CHAT_TEMPLATE = r"""[gMASK]<sop>
{%- macro visible_text(content) -%}
    {%- if content is string -%}
        {{- content -}}
    {%- elif content is iterable and content is not mapping -%}
        {%- for item in content -%}
            {%- if item is string -%}
                {{- item -}}
            {%- elif item is mapping and (item.type == 'video' or 'video' in item) -%}
                {{- '<|begin_of_video|><|video|><|end_of_video|>' -}}
            {%- elif item is mapping and (item.type == 'image' or 'image' in item) -%}
                {{- '<|begin_of_image|><|image|><|end_of_image|>' -}}
            {%- elif item is mapping and item.type == 'text' -%}
                {{- item.text -}}
            {%- endif -%}
        {%- endfor -%}
    {%- elif content is not none -%}
        {{- content -}}
    {%- endif -%}
{%- endmacro -%}
{%- set thinking_off = enable_thinking is defined and not enable_thinking -%}
{%- set ns = namespace(last_user_index=-1) -%}
{%- for m in messages -%}
    {%- if m.role == 'user' -%}
        {%- set ns.last_user_index = loop.index0 -%}
    {%- endif -%}
{%- endfor -%}
{%- for m in messages -%}
    {%- if m.role == 'system' -%}
        {{- '<|system|>\n' + visible_text(m.content) -}}
    {%- elif m.role == 'user' -%}
        {%- set text = visible_text(m.content) -%}
        {{- '<|user|>\n' + text -}}
        {%- if thinking_off and not text.endswith('/nothink') -%}
            {{- '/nothink' -}}
        {%- endif -%}
    {%- elif m.role == 'assistant' -%}
        {%- set content = visible_text(m.content) -%}
        {%- set reasoning = '' -%}
        {%- if m.reasoning_content is string -%}
            {%- set reasoning = m.reasoning_content -%}
        {%- elif '</think>' in content -%}
            {%- set reasoning = content.split('</think>')[0].rstrip('\n') -%}
            {%- set reasoning = reasoning.split('<think>')[-1].lstrip('\n') -%}
            {%- set content = content.split('</think>')[-1].lstrip('\n') -%}
        {%- endif -%}
        {{- '<|assistant|>' -}}
        {%- if loop.index0 > ns.last_user_index and reasoning.strip() -%}
            {{- '\n<think>' + reasoning.strip() + '</think>' -}}
        {%- else -%}
            {{- '\n<think></think>' -}}
        {%- endif -%}
        {%- if content.strip() -%}
            {{- '\n' + content.strip() -}}
        {%- endif -%}
    {%- elif m.role == 'tool' or m.role == 'observation' -%}
        {%- if loop.first or messages[loop.index0 - 1].role != m.role -%}
            {{- '<|observation|>' -}}
        {%- endif -%}
        {{- '\n<tool_response>\n' + visible_text(m.content) + '\n</tool_response>' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|assistant|>\n' -}}
    {%- if thinking_off -%}
        {{- '<think></think>\n' -}}
    {%- endif -%}
{%- endif -%}"""

_SUBJECTS = [
    "A man",
    "A woman",
    "The child",
    "Two people",
    "A group of students",
    "The lecturer",
    "A cyclist",
    "The goalkeeper",
    "A red car",
    "A white truck",
    "The referee",
    "A dog",
    "The crowd",
    "A delivery van",
]
_ACTIONS = [
    "walks across the street",
    "runs toward the camera",
    "stops at the traffic light",
    "kicks the ball",
    "writes on the whiteboard",
    "parks near the entrance",
    "waves at the audience",
    "turns left at the corner",
    "scores a goal",
    "opens the door",
    "points at the slide",
    "overtakes a bus",
    "jumps over the fence",
    "sits down on a bench",
]
_PLACES = [
    "in the first clip",
    "at the start of the video",
    "near the end of the segment",
    "during the lecture",
    "on the football pitch",
    "in the parking lot",
    "at the intersection",
    "in the second half",
]
_FIXED_SENTENCES = (
    "Describe the video in one sentence.",
    "Summarize what happens in this clip.",
    "List the events with their start and end times in seconds.",
    "Answer in JSON with the keys start, end, label and confidence.",
    "What is the person doing between 10 and 20 seconds?",
    "How many cars pass the camera in this segment?",
    "The video shows a busy road with cars, buses and cyclists.",
    "A lecture about machine learning with slides and a whiteboard.",
    "A football match: the home team scores in the 45th minute.",
    "A basketball player dribbles, shoots and misses the basket.",
    "People are talking in a meeting room; one person presents a chart.",
    "The camera pans from the left to the right and then zooms in.",
    "No person is visible in the frame; the scene is empty and dark.",
    "The weather is sunny, the road is wet and the light is changing.",
    "Frame 0, frame 1, frame 2 and frame 3 show the same scene.",
    "Timestamps: 00:00:05, 00:01:30, 00:12:45 and 01:02:03.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 11 12 15 20 25 30 45 60 90 100 120 300 600 1000.",
    '{"start": 0.0, "end": 2.5, "label": "person walking", "confidence": 0.91}',
    '{"events": [{"t": 12, "label": "car stops"}, {"t": 15.5, "label": "car leaves"}]}',
    '{"caption": "A man rides a bike.", "objects": ["man", "bike", "road"], "count": 3}',
    '[{"box": [120, 80, 640, 720], "label": "car"}, {"box": [10, 20, 30, 40], "label": "person"}]',
    "Key: value, list: [1, 2, 3], nested: {a: {b: null}}, flags: true false.",
    "The speaker says: thank you, any questions? Yes, what about the data set?",
    "Sports, news, traffic, lectures, cooking, music and games are common video topics.",
)


def tiny_corpus() -> list[str]:
    """A few hundred built-in English sentences (video, people, cars, sports, lectures, JSON, digits)."""
    combos = itertools.product(_SUBJECTS, _ACTIONS, _PLACES)
    generated = [f"{s} {a} {p}." for i, (s, a, p) in enumerate(combos) if i % 7 == 0]
    pairs = itertools.product(_SUBJECTS, _ACTIONS)
    timed = [f"At {3 * i} seconds, {s.lower()} {a}." for i, (s, a) in enumerate(pairs) if i % 3 == 0]
    return [*_FIXED_SENTENCES, *generated, *timed]


def _train_bpe(corpus: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_BPE_VOCAB_SIZE,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    specials = [
        AddedToken(t, special=t not in _VISIBLE_MARKERS, normalized=False, single_word=False)
        for t in TINY_SPECIAL_TOKENS
    ]
    tok.add_tokens(specials)
    return tok


def _build_tokenizer() -> PreTrainedTokenizerFast:
    backend = _train_bpe(tiny_corpus())
    extra = [t for t in TINY_SPECIAL_TOKENS if t not in _VISIBLE_MARKERS and t != _EOS]
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=_EOS,
        pad_token=_EOS,
        extra_special_tokens=extra,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=TINY_TEXT_CONFIG["max_position_embeddings"],
        chat_template=TINY_CHAT_TEMPLATE,
    )


def _token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in TINY_SPECIAL_TOKENS}
    single = {t: i for t, i in ids.items() if isinstance(i, int) and i != tokenizer.unk_token_id}
    if len(single) != len(TINY_SPECIAL_TOKENS):
        raise RuntimeError(f"special tokens missing from the tokenizer: {sorted(set(ids) - set(single))}")
    return single


def _build_config(tokenizer: PreTrainedTokenizerFast) -> Glm4vMoeConfig:
    ids = _token_ids(tokenizer)
    text = {
        **TINY_TEXT_CONFIG,
        "vocab_size": len(tokenizer),
        "pad_token_id": ids[_EOS],
        "eos_token_id": [ids[t] for t in _STOP_TOKENS],
    }
    return Glm4vMoeConfig(
        text_config=text,
        vision_config=dict(TINY_VISION_CONFIG),
        image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"],
        image_start_token_id=ids["<|begin_of_image|>"],
        image_end_token_id=ids["<|end_of_image|>"],
        video_start_token_id=ids["<|begin_of_video|>"],
        video_end_token_id=ids["<|end_of_video|>"],
    )


def _build_model(config: Glm4vMoeConfig, seed: int) -> Glm4vMoeForConditionalGeneration:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Glm4vMoeForConditionalGeneration(config)
    model.eval()
    text = config.get_text_config()
    model.generation_config = GenerationConfig(
        eos_token_id=list(text.eos_token_id),
        pad_token_id=text.pad_token_id,
        do_sample=False,
    )
    return model


def make_tiny_checkpoint(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random GLM-4.5V checkpoint (model, tokenizer, processor, chat template) to ``out_dir``.

    Fully offline and deterministic given ``seed``. Returns the directory, ready for
    ``AutoProcessor.from_pretrained`` and ``AutoModelForImageTextToText.from_pretrained``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer()
    processor = Glm4vProcessor(
        image_processor=Glm4vImageProcessor(),
        tokenizer=tokenizer,
        video_processor=Glm4vVideoProcessor(),
        chat_template=TINY_CHAT_TEMPLATE,
    )
    model = _build_model(_build_config(tokenizer), seed)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    _write_readme(out, seed)
    return out


def _write_readme(out: Path, seed: int) -> None:
    note = {
        "what": "tiny random Glm4vMoeForConditionalGeneration (GLM-4.5V architecture), vstream.model.tiny",
        "seed": seed,
        "warning": "random weights: proves plumbing, never answers",
    }
    (out / "vstream_tiny.json").write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")
