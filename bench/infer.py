"""Inference benchmark: the transformers backend's plumbing on CPU, or GLM-4.5V-width prefill on a GPU.

    python bench/infer.py [--clips 8] [--new-tokens 32]          # CPU, tiny random-weight checkpoint
    python bench/infer.py --gpu [--layers 4] [--batches 1,4]      # CUDA only: real widths, reduced depth

CPU: clips/s and visual tokens/s of ``TransformersBackend.generate`` on 16-frame 448x252 clips at batch 1
and 4, and in the same run the processor-only time (building inputs), so the printout gives ratios
measured together. The tiny model has random weights: this is the throughput of plumbing, not GLM-4.5V.

GPU: a Glm4vMoe model with GLM-4.5V's real widths (text hidden 4096, 96 heads, 8 KV heads, head_dim 128,
128 experts of 1408, 8 per token + 1 shared, first layer dense 10944, vocab 151552; vision depth 24,
hidden 1536, 12 heads) but only ``--layers`` text layers and random bf16 weights; times prefill (and a few
decode steps) on 16-frame 448x448 clips and reports achieved TFLOP/s against the bf16 dense peak, with the
FLOP model of docs/performance.md computed for the reduced depth.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

FPS = 2.0
CPU_SHAPE = (16, 252, 448)  # frames, height, width: 448x252 landscape
GPU_SHAPE = (16, 448, 448)
# bf16 dense tensor-core peak, TFLOP/s (SXM parts; PCIe H100 is lower).
PEAKS = (
    ("H100 PCIe", 756.0),
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100", 989.0),
    ("H800", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
)


def make_clips(count: int, shape: tuple[int, int, int]) -> list[Any]:
    from vstream.model.base import ClipInput

    frames, height, width = shape
    rng = np.random.default_rng(0)
    return [
        ClipInput(
            f"bench-{i}",
            rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8),
            tuple(k / FPS for k in range(frames)),
            FPS,
        )
        for i in range(count)
    ]


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# ----------------------------------------------------------------------------------------------- CPU


@dataclass
class CpuRow:
    batch: int
    clips: int
    gen_s: float
    proc_s: float
    visual: int
    new: int


def cpu_row(backend: Any, clips: list[Any], task: Any, batch: int) -> CpuRow:
    from vstream.model.transformers_backend import build_inputs

    groups = chunks(clips, batch)
    backend.generate(groups[0], task)  # warm-up: first-call allocations and lazy inits
    started = time.perf_counter()
    for group in groups:
        build_inputs(backend.processor, group, task)
    proc_s = time.perf_counter() - started
    started = time.perf_counter()
    gens = [g for group in groups for g in backend.generate(group, task)]
    gen_s = time.perf_counter() - started
    failed = [g.error for g in gens if g.error]
    if failed:
        raise SystemExit(f"generation failed: {failed[0]}")
    return CpuRow(
        batch, len(clips), gen_s, proc_s, sum(g.visual_tokens for g in gens), sum(g.new_tokens for g in gens)
    )


def median_row(rows: list[CpuRow]) -> CpuRow:
    """The round with the median generate time (keeps each row's own processor time beside it)."""
    return sorted(rows, key=lambda r: r.gen_s)[len(rows) // 2]


def run_cpu(args: argparse.Namespace) -> None:
    import torch

    from vstream.analysis.tasks import render
    from vstream.model.transformers_backend import TransformersBackend

    print("NOTE: 'tiny' is a random-weight checkpoint of GLM-4.5V's architecture (~232k parameters).")
    print("      These numbers are the throughput of vstream's plumbing (pre-processing, batching, M-RoPE,")
    print("      generate, decoding), NOT of GLM-4.5V: never compare them with GPU or server figures.\n")
    backend = TransformersBackend("tiny", device_map=None)
    task = render("caption", duration_s=CPU_SHAPE[0] / FPS, max_new_tokens=args.new_tokens)
    clips = make_clips(args.clips, CPU_SHAPE)
    frames, height, width = CPU_SHAPE
    print(
        f"clips: {args.clips} x {frames} frames {width}x{height}, {args.new_tokens} new tokens max, greedy; "
        f"torch threads {torch.get_num_threads()}; median of {args.repeats} interleaved rounds\n"
    )
    rounds: dict[int, list[CpuRow]] = {b: [] for b in args.batches}
    for _ in range(args.repeats):  # interleaved, so a noisy neighbour hits every batch size alike
        for batch in args.batches:
            rounds[batch].append(cpu_row(backend, clips, task, batch))
    backend.close()
    print(
        f"{'batch':>5} {'clips/s':>8} {'visual tok/s':>13} {'new tok/s':>10} {'proc-only clips/s':>18} "
        f"{'proc/generate':>14}"
    )
    rows = [median_row(rounds[b]) for b in args.batches]
    for row in rows:
        print(
            f"{row.batch:>5} {row.clips / row.gen_s:>8.2f} {row.visual / row.gen_s:>13.0f} "
            f"{row.new / row.gen_s:>10.1f} {row.clips / row.proc_s:>18.2f} {row.proc_s / row.gen_s:>14.1%}"
        )
    for row in rows[1:]:
        print(
            f"\nbatch {row.batch} vs batch {rows[0].batch}: {rows[0].gen_s / row.gen_s:.2f}x clips/s, "
            f"processor alone {rows[0].proc_s / row.proc_s:.2f}x (same run)"
        )
    print(
        f"visual tokens per clip: {rows[0].visual // rows[0].clips}; "
        "'proc/generate' = share of generate time that input building alone takes"
    )


# ----------------------------------------------------------------------------------------------- GPU

GLM45V_TEXT: dict[str, Any] = {
    "vocab_size": 151552,
    "hidden_size": 4096,
    "intermediate_size": 10944,
    "num_attention_heads": 96,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "moe_intermediate_size": 1408,
    "n_routed_experts": 128,
    "num_experts_per_tok": 8,
    "n_shared_experts": 1,
    "first_k_dense_replace": 1,
    "n_group": 1,
    "topk_group": 1,
    "attention_bias": True,
    "max_position_embeddings": 65536,
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "partial_rotary_factor": 0.5,
        "mrope_section": [8, 12, 12],
    },
}
# intermediate_size only sizes the patch merger (the blocks' MLP width is out_hidden_size in transformers).
GLM45V_VISION: dict[str, Any] = {
    "depth": 24,
    "hidden_size": 1536,
    "num_heads": 12,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "spatial_merge_size": 2,
    "out_hidden_size": 4096,
    "intermediate_size": 10944,
}


@dataclass(frozen=True)
class Shrink:
    """Size overrides for a CPU smoke run of the GPU path (tests); empty means GLM-4.5V's real widths."""

    text: dict[str, Any] = field(default_factory=dict)
    vision: dict[str, Any] = field(default_factory=dict)


def glm45v_width_config(layers: int, vision_depth: int, token_ids: dict[str, int], shrink: Shrink) -> Any:
    """Glm4vMoeConfig at GLM-4.5V width and ``layers`` text layers, fed by the tiny tokenizer's ids."""
    from transformers import Glm4vMoeConfig

    text = {
        **GLM45V_TEXT,
        "num_hidden_layers": layers,
        **shrink.text,
        "pad_token_id": token_ids["pad"],
        "eos_token_id": [token_ids["eos"]],
    }
    vision = {**GLM45V_VISION, "depth": vision_depth, **shrink.vision}
    keys = (
        "image_token_id",
        "video_token_id",
        "image_start_token_id",
        "image_end_token_id",
        "video_start_token_id",
        "video_end_token_id",
    )
    special: dict[str, Any] = {k: token_ids[k] for k in keys}
    return Glm4vMoeConfig(text_config=text, vision_config=vision, **special)


def tiny_token_ids(processor: Any) -> dict[str, int]:
    """Special ids of the tiny tokenizer: the big model is fed inputs built by the tiny processor (same
    Glm4vProcessor resize/patching as GLM-4.5V; only the text token ids differ, which timing ignores)."""
    tok = processor.tokenizer
    names = {
        "image_token_id": "<|image|>",
        "video_token_id": "<|video|>",
        "image_start_token_id": "<|begin_of_image|>",
        "image_end_token_id": "<|end_of_image|>",
        "video_start_token_id": "<|begin_of_video|>",
        "video_end_token_id": "<|end_of_video|>",
    }
    ids = {k: int(tok.convert_tokens_to_ids(v)) for k, v in names.items()}
    return {**ids, "pad": int(tok.pad_token_id), "eos": int(tok.eos_token_id)}


def text_active_params(cfg: Any, layers: int) -> int:
    """Parameters one text token passes through in ``layers`` layers (12.18e9 at GLM-4.5V's 46)."""
    h, q, kv = cfg.hidden_size, cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    attn = 2 * h * q + 2 * h * kv
    dense = min(cfg.first_k_dense_replace, layers)
    moe_layer = (cfg.num_experts_per_tok + cfg.n_shared_experts) * 3 * h * cfg.moe_intermediate_size
    moe_layer += h * cfg.n_routed_experts  # router
    return int(layers * attn + dense * 3 * h * cfg.intermediate_size + (layers - dense) * moe_layer)


def prefill_flops(
    config: Any, seq_len: int, grid_thw: list[list[int]], layers: int | None = None
) -> dict[str, float]:
    """FLOPs of one prefill (performance.md's model): 2 x active params x tokens, causal attention, the
    vision tower per patch. ``layers`` defaults to the built depth; 46 gives the full GLM-4.5V figure
    (72.9 TFLOP for one 16-frame 448x448 clip of 2,224 tokens, as in the doc)."""
    text, vis = config.text_config, config.vision_config
    layers = text.num_hidden_layers if layers is None else layers
    rows = len(grid_thw)
    q_dim = text.num_attention_heads * text.head_dim
    flops = {
        "text": 2.0 * text_active_params(text, layers) * seq_len * rows,
        # QK^T and AV over a causal mask: 2 x (2 T^2 d) / 2 per layer.
        "attention": 2.0 * seq_len**2 * q_dim * layers * rows,
        "lm_head": 2.0 * text.hidden_size * text.vocab_size * rows,  # logits of the last token only
    }
    h, out, merge = vis.hidden_size, vis.out_hidden_size, vis.spatial_merge_size**2
    patches = sum(t * gh * gw for t, gh, gw in grid_thw)
    per_patch = 2.0 * vis.depth * (4 * h * h + 3 * h * out)  # ~1.36 GFLOP at depth 24 (performance.md)
    # Vision attention runs per temporal patch (one frame pair of gh x gw patches): 4 n^2 h per block.
    attn = sum(4.0 * (gh * gw) ** 2 * h * vis.depth * t for t, gh, gw in grid_thw)
    merger = 2.0 * (patches / merge) * (merge * h * out + out * out + 3 * out * vis.intermediate_size)
    flops["vision"] = per_patch * patches + attn + merger
    return flops


def detect_peak(name: str, override: float | None) -> float | None:
    if override:
        return override
    return next((peak for key, peak in PEAKS if key.lower() in name.lower()), None)


def build_gpu_model(args: argparse.Namespace, processor: Any, device: str, shrink: Shrink) -> Any:
    import torch
    from transformers import Glm4vMoeForConditionalGeneration

    config = glm45v_width_config(args.layers, args.vision_depth, tiny_token_ids(processor), shrink)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    started = time.perf_counter()
    with torch.device(device):
        model = Glm4vMoeForConditionalGeneration._from_config(config, dtype=dtype)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    print(
        f"built {args.layers}-layer GLM-4.5V-width model: {params / 1e9:.2f}B params ({dtype}), "
        f"random weights, {time.perf_counter() - started:.1f}s; experts: "
        f"{getattr(config, '_experts_implementation', '?')}, attention: {config._attn_implementation}"
    )
    return model


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(device: str, fn: Callable[[], object]) -> float:
    _sync(device)
    started = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - started


def time_batch(model: Any, inputs: Any, device: str, repeats: int, decode_steps: int) -> tuple[float, float]:
    """Median prefill seconds, and seconds per decode step: generate(1 + n) minus generate(1), over n, so
    generate's own overhead cancels out."""
    import torch

    def generate(steps: int) -> None:
        model.generate(**inputs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False)

    def forward() -> None:
        model(**inputs, use_cache=False, logits_to_keep=1)

    with torch.inference_mode():
        _timed(device, forward)  # warm-up: kernels, allocator
        pre = float(np.median([_timed(device, forward) for _ in range(repeats)]))
        if decode_steps < 1:
            return pre, 0.0
        one = min(_timed(device, lambda: generate(1)) for _ in range(2))
        more = _timed(device, lambda: generate(1 + decode_steps))
    return pre, max(0.0, more - one) / decode_steps


def run_gpu(args: argparse.Namespace, device: str = "cuda", shrink: Shrink | None = None) -> None:
    """The GPU benchmark; tests run it on CPU with ``shrink`` so the path is known to work before a GPU
    session spends its time on it."""
    import torch
    from transformers import AutoProcessor

    from vstream.analysis.tasks import render
    from vstream.model.loading import tiny_checkpoint_dir
    from vstream.model.transformers_backend import build_inputs

    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    peak = detect_peak(name, args.peak)
    processor = AutoProcessor.from_pretrained(tiny_checkpoint_dir(), local_files_only=True)
    model = build_gpu_model(args, processor, device, shrink or Shrink())
    task = render("caption", duration_s=GPU_SHAPE[0] / FPS)
    frames, height, width = GPU_SHAPE
    print(f"device: {name}; bf16 dense peak: {f'{peak:.0f} TFLOP/s' if peak else 'unknown (use --peak)'}")
    print(
        f"clips: {frames} frames {width}x{height}; FLOPs for {args.layers} of 46 text layers, vision depth "
        f"{args.vision_depth}\n"
    )
    print(
        f"{'batch':>5} {'tokens':>7} {'TFLOP':>7} {'prefill s':>10} {'TFLOP/s':>8} {'of peak':>8} "
        f"{'clips/s':>8} {'46-layer clips/s':>17} {'decode ms/step':>15}"
    )
    for batch in args.batches:
        try:
            gpu_row(args, model, build_inputs(processor, make_clips(batch, GPU_SHAPE), task), device, peak)
        except torch.cuda.OutOfMemoryError:
            print(f"{batch:>5} out of GPU memory: try fewer --layers or smaller --batches")
            torch.cuda.empty_cache()
    print(
        "\nclips/s is for the reduced-depth random model; '46-layer clips/s' is what GLM-4.5V's full depth"
        "\nwould give at the same TFLOP/s (FLOPs scale per layer). The fraction of peak is what transfers."
    )


def gpu_row(args: argparse.Namespace, model: Any, inputs: Any, device: str, peak: float | None) -> None:
    inputs = inputs.to(device)
    batch, seq_len = (int(n) for n in inputs["input_ids"].shape)
    grid = inputs["video_grid_thw"].tolist()
    flops = prefill_flops(model.config, seq_len, grid)
    total = sum(flops.values())
    full = sum(prefill_flops(model.config, seq_len, grid, layers=46).values())
    pre, step = time_batch(model, inputs, device, args.repeats, args.decode_steps)
    rate = total / pre
    share = f"{rate / 1e12 / peak:.1%}" if peak else "n/a"
    print(
        f"{batch:>5} {seq_len:>7} {total / 1e12:>7.2f} {pre:>10.3f} {rate / 1e12:>8.1f} {share:>8} "
        f"{batch / pre:>8.2f} {batch * rate / full:>17.2f} {step * 1e3:>15.1f}"
    )
    print("      FLOP split: " + ", ".join(f"{k} {v / total:.0%}" for k, v in flops.items()))


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=8, help="CPU: clips per batch size measured")
    parser.add_argument("--new-tokens", type=int, default=32, help="CPU: max new tokens per clip")
    parser.add_argument("--gpu", action="store_true", help="GLM-4.5V-width prefill on CUDA")
    parser.add_argument("--batches", default="1,4", help="comma-separated batch sizes")
    parser.add_argument("--layers", type=int, default=4, help="GPU: text layers (GLM-4.5V has 46)")
    parser.add_argument("--vision-depth", type=int, default=24, help="GPU: vision blocks (GLM-4.5V has 24)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (CPU) or prefills (GPU) timed; median")
    parser.add_argument("--decode-steps", type=int, default=8, help="GPU: decode steps timed (0: none)")
    parser.add_argument("--peak", type=float, default=None, help="GPU: bf16 dense peak TFLOP/s override")
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in str(args.batches).split(",") if b.strip()]
    if min(args.clips, args.layers, args.repeats, *args.batches, 0 if not args.batches else 1) < 1:
        parser.error("--clips, --batches, --layers and --repeats must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    if not args.gpu:
        run_cpu(args)
        return
    import torch

    if not torch.cuda.is_available():
        sys.exit("--gpu needs a CUDA GPU, and torch sees none here: run without --gpu for the CPU benchmark")
    run_gpu(args)


if __name__ == "__main__":
    main()
