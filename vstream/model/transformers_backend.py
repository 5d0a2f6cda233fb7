"""In-process GLM-4.5V (or GLM-4.1V) through transformers: one padded batch of clips per ``generate``.

Inputs are built by the model's own processor and chat template (``build_inputs``), so prompt layout,
frame-pair timestamps and ``mm_token_type_ids`` are exactly what the checkpoint expects. Per-clip
problems (bad frame counts, clips over the visual-token budget, a clip that fails even alone) come back
as error Generations; only a backend that cannot work at all raises ``BackendError``.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, BatchFeature, GenerationConfig

from vstream.config import ModelSettings
from vstream.model.base import BackendError, ClipInput, Generation, TaskSpec
from vstream.model.loading import offline, resolve_device_map, resolve_dtype, resolve_model_source

logger = logging.getLogger(__name__)

__all__ = [
    "TransformersBackend",
    "build_inputs",
    "clip_problem",
    "conversation",
    "predicted_visual_tokens",
]

# mm_token_type_ids value the Glm4vProcessor gives video placeholder tokens (0 text, 1 image, 2 video).
VIDEO_TOKEN_TYPE = 2
_GLM_TYPES = {"glm4v", "glm4v_moe"}


def conversation(clip: ClipInput, task: TaskSpec) -> list[dict[str, Any]]:
    """One user turn: the clip's frames, then the task prompt (the order GLM-V's examples use)."""
    content = [{"type": "video", "video": clip.frames}, {"type": "text", "text": task.prompt}]
    return [{"role": "user", "content": content}]


def build_inputs(processor: Any, clips: Sequence[ClipInput], task: TaskSpec) -> BatchFeature:
    """Model inputs for ``clips`` as one left-padded batch, built only by the processor and its template.

    Frames are passed as already sampled (``do_sample_frames=False``) with each clip's metadata, so the
    timestamp text before each frame pair is the clip-relative second of its first frame.
    """
    if not clips:
        raise ValueError("build_inputs needs at least one clip")
    inputs: BatchFeature = processor.apply_chat_template(
        [conversation(clip, task) for clip in clips],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        enable_thinking=task.thinking,
        processor_kwargs={
            "video_metadata": [clip.video_metadata() for clip in clips],
            "do_sample_frames": False,
            "padding": True,
        },
    )
    return inputs


def predicted_visual_tokens(processor: Any, num_frames: int, height: int, width: int) -> int:
    """Visual tokens the processor will give a clip, without processing it.

    Asks the video processor (same resize rule and pixel cap as the real run); falls back to
    ``(T/2)·(H/28)·(W/28)`` for processors without that helper.
    """
    video = getattr(processor, "video_processor", None)
    merge = int(getattr(video, "merge_size", 2))
    if video is not None and hasattr(video, "get_num_of_video_patches"):
        return int(video.get_num_of_video_patches(num_frames, height, width)) // (merge * merge)
    factor = 28
    side_h = max(factor, round(height / factor) * factor)
    side_w = max(factor, round(width / factor) * factor)
    return (num_frames // 2) * (side_h // factor) * (side_w // factor)


def clip_problem(processor: Any, clip: ClipInput, max_visual_tokens: int) -> str | None:
    """Why ``clip`` cannot be sent (a non-retryable problem), or None when it can."""
    frames = clip.frames
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        return f"frames must be a T x H x W x 3 uint8 array, got shape {frames.shape} dtype {frames.dtype}"
    count = int(frames.shape[0])
    # GLM encodes frames in pairs: one frame fails in the processor, an odd count gets a duplicated frame.
    if count < 2 or count % 2:
        return f"clip has {count} frames: GLM needs an even number of frames, at least 2"
    if len(clip.rel_timestamps) != count:
        return f"clip has {count} frames but {len(clip.rel_timestamps)} timestamps"
    if not clip.fps > 0:
        return f"clip fps must be positive, got {clip.fps}"
    try:
        tokens = predicted_visual_tokens(processor, count, clip.height, clip.width)
    except ValueError as exc:  # e.g. an aspect ratio over 200
        return f"clip cannot be processed: {exc}"
    if tokens > max_visual_tokens:
        return (
            f"clip needs {tokens} visual tokens ({count} frames of {clip.width}x{clip.height}), over the "
            f"budget of {max_visual_tokens}: send fewer or smaller frames"
        )
    return None


def _id_list(value: int | Iterable[int] | None) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


class TransformersBackend:
    """``ModelBackend`` running a GLM-V checkpoint in this process (greedy decoding by default)."""

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        device_map: str | None = "auto",
        max_visual_tokens: int = 30_000,
        max_new_tokens: int | None = None,
        repetition_penalty: float = 1.0,
        cache_dir: Path | None = None,
    ) -> None:
        """``max_new_tokens`` caps ``task.max_new_tokens`` (None: the task decides). ``repetition_penalty``
        1.1 is GLM's official setting; it is off by default because HF applies it to the prompt too, so it
        pushes the model away from the JSON keys the prompt asks for. (Left padding is exempt in
        transformers 5.x, so batched and unbatched output stay identical with it on.)
        """
        self.model_id = model
        self.max_visual_tokens = max_visual_tokens
        self.max_new_tokens = max_new_tokens
        self.repetition_penalty = repetition_penalty
        source = resolve_model_source(model, cache_dir=cache_dir)
        self.processor, self._model = _load(source, resolve_dtype(dtype), resolve_device_map(device_map))
        tokenizer = self.processor.tokenizer
        gen_cfg = self._model.generation_config
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else gen_cfg.pad_token_id
        self._stop_ids = sorted({*_id_list(gen_cfg.eos_token_id), *_id_list(tokenizer.eos_token_id)})
        if not self._stop_ids:
            raise BackendError(f"model {model!r} defines no end-of-sequence token")

    @classmethod
    def from_settings(cls, settings: ModelSettings, **kwargs: Any) -> TransformersBackend:
        return cls(
            settings.model,
            dtype=settings.dtype,
            device_map=settings.device_map,
            max_visual_tokens=settings.max_visual_tokens,
            max_new_tokens=settings.max_new_tokens,
            **kwargs,
        )

    @property
    def model(self) -> Any:
        return self._require_open()

    def _require_open(self) -> Any:
        if self._model is None:
            raise BackendError(f"backend for {self.model_id!r} is closed")
        return self._model

    def generate(self, clips: Sequence[ClipInput], task: TaskSpec) -> list[Generation]:
        self._require_open()  # a closed backend is a caller bug, not a per-clip problem: raise
        results: list[Generation | None] = [None] * len(clips)
        good: list[int] = []
        for i, clip in enumerate(clips):
            problem = clip_problem(self.processor, clip, self.max_visual_tokens)
            if problem is None:
                good.append(i)
            else:
                results[i] = Generation(error=problem, retryable=False, extra={"clip_id": clip.clip_id})
        if good:
            done = self._generate_with_fallback([clips[i] for i in good], task)
            for i, gen in zip(good, done, strict=True):
                results[i] = gen
        return [r if r is not None else Generation(error="internal: no result") for r in results]

    def generate_text(
        self, prompts: Sequence[str], *, max_new_tokens: int = 1024, thinking: bool = False
    ) -> list[Generation]:
        """GLM-4.5V as a text model (e.g. to summarise captions): one Generation per prompt."""
        model = self._require_open()
        chats = [[{"role": "user", "content": [{"type": "text", "text": p}]}] for p in prompts]
        texts = [
            self.processor.apply_chat_template(
                c, add_generation_prompt=True, tokenize=False, enable_thinking=thinking
            )
            for c in chats
        ]
        started = time.perf_counter()
        try:
            inputs = self.processor.tokenizer(
                texts, return_tensors="pt", padding=True, add_special_tokens=False
            )
            inputs = inputs.to(model.device)
            spec = TaskSpec(name="caption", prompt="", prompt_hash="", max_new_tokens=max_new_tokens)
            with torch.inference_mode():
                output = model.generate(**inputs, generation_config=self._generation_config(spec))
        except Exception as exc:  # per-call failure: every prompt gets the error, the caller decides
            logger.warning("text generation failed: %s: %s", type(exc).__name__, exc)
            return [Generation(error=f"{type(exc).__name__}: {exc}", retryable=True) for _ in prompts]
        new_ids = output[:, inputs["input_ids"].shape[1] :].tolist()
        seconds = (time.perf_counter() - started) / max(len(prompts), 1)
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        out = []
        for i in range(len(prompts)):
            text, count = self._decode(new_ids[i])
            out.append(
                Generation(text=text, prompt_tokens=int(prompt_tokens[i]), new_tokens=count, seconds=seconds)
            )
        return out

    def close(self) -> None:
        self._model = None
        _free_accelerator_cache()

    def _generate_with_fallback(self, clips: list[ClipInput], task: TaskSpec) -> list[Generation]:
        try:
            return self._run(clips, task)
        except Exception as exc:  # OOM or anything else in the batch: isolate the clip that causes it
            logger.warning(
                "batch of %d clips failed (%s: %s); retrying each alone", len(clips), type(exc).__name__, exc
            )
        _free_accelerator_cache()
        out: list[Generation] = []
        for clip in clips:
            try:
                (gen,) = self._run([clip], task, alone=True)
            except Exception as exc:
                logger.warning("clip %s failed alone: %s: %s", clip.clip_id, type(exc).__name__, exc)
                _free_accelerator_cache()
                gen = Generation(
                    error=f"{type(exc).__name__}: {exc}", retryable=True, extra={"clip_id": clip.clip_id}
                )
            out.append(gen)
        return out

    def _generation_config(self, task: TaskSpec) -> GenerationConfig:
        limit = (
            task.max_new_tokens
            if self.max_new_tokens is None
            else min(task.max_new_tokens, self.max_new_tokens)
        )
        # A fresh config, not the checkpoint's: GLM-4.5V ships sampling defaults that would otherwise leak in.
        return GenerationConfig(
            max_new_tokens=limit,
            do_sample=False,
            repetition_penalty=self.repetition_penalty,
            eos_token_id=self._stop_ids,
            pad_token_id=self._pad_id,
        )

    def _run(self, clips: list[ClipInput], task: TaskSpec, *, alone: bool = False) -> list[Generation]:
        model = self.model
        started = time.perf_counter()
        inputs = build_inputs(self.processor, clips, task).to(model.device)
        with torch.inference_mode():
            output = model.generate(**inputs, generation_config=self._generation_config(task))
        new_ids = output[:, inputs["input_ids"].shape[1] :].tolist()
        seconds = (time.perf_counter() - started) / len(clips)
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        visual = (inputs["mm_token_type_ids"] == VIDEO_TOKEN_TYPE).sum(dim=1).tolist()
        results = []
        for i, clip in enumerate(clips):
            text, count = self._decode(new_ids[i])
            extra: dict[str, object] = {"clip_id": clip.clip_id, "batch_size": len(clips), "alone": alone}
            results.append(
                Generation(
                    text=text,
                    prompt_tokens=int(prompt_tokens[i]),
                    visual_tokens=int(visual[i]),
                    new_tokens=count,
                    seconds=seconds,
                    extra=extra,
                )
            )
        return results

    def _decode(self, ids: list[int]) -> tuple[str, int]:
        """Text up to the first stop token and the number of tokens generated (the stop token included).

        Decoding by id rather than with ``skip_special_tokens`` keeps ``<think>``/``<|begin_of_box|>``
        whether or not a checkpoint's tokenizer marks them special: the parser needs them.
        """
        stops = set(self._stop_ids)
        end = next((k for k, tok in enumerate(ids) if tok in stops), None)
        kept = ids if end is None else ids[:end]
        kept = [tok for tok in kept if tok != self._pad_id]
        text = self.processor.tokenizer.decode(kept, skip_special_tokens=False)
        return text, len(ids) if end is None else end + 1


def _free_accelerator_cache() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _load(source: str, dtype: torch.dtype, device_map: str | None) -> tuple[Any, Any]:
    started = time.perf_counter()
    local_only = offline()
    try:
        processor = AutoProcessor.from_pretrained(source, local_files_only=local_only)
        model = AutoModelForImageTextToText.from_pretrained(
            source, dtype=dtype, device_map=device_map, local_files_only=local_only
        )
    except (OSError, ValueError, KeyError) as exc:
        hint = " (HF_HUB_OFFLINE is set: only cached or local models load)" if local_only else ""
        raise BackendError(f"cannot load model {source!r}{hint}: {type(exc).__name__}: {exc}") from exc
    model.eval()
    model_type = getattr(model.config, "model_type", "?")
    if model_type not in _GLM_TYPES:
        # Other image-text models may load, but the prompt layout and timestamps here are GLM-V's.
        logger.warning("model %s has type %r, not GLM-V (%s)", source, model_type, ", ".join(_GLM_TYPES))
    if not hasattr(processor, "video_processor"):
        raise BackendError(f"model {source!r} has no video processor: vstream sends clips as video")
    logger.info(
        "loaded %s (%s, %s) on %s in %.1fs",
        source,
        type(model).__name__,
        dtype,
        model.device,
        time.perf_counter() - started,
    )
    return processor, model
