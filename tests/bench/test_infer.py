"""The inference benchmark's GPU path, checked on CPU so that a session with a lent GPU spends its minutes
measuring, not debugging: the FLOP model against docs/performance.md, and the whole run at shrunk sizes."""

from __future__ import annotations

import re

import pytest
from transformers import AutoProcessor

from bench import infer
from vstream.model.loading import tiny_checkpoint_dir

# GLM-4.5V's published full-depth figures (shared/docs/performance.md): 12.18e9 active text parameters
# per token; one 16-frame 448x448 clip is 2,224 tokens and 72.9 TFLOP of prefill.
FULL_LAYERS = 46
CLIP_GRID = [[8, 32, 32]]  # 16 frames / temporal patch 2, 448 / patch 14


@pytest.fixture(scope="module")
def token_ids() -> dict[str, int]:
    processor = AutoProcessor.from_pretrained(tiny_checkpoint_dir(), local_files_only=True)
    return infer.tiny_token_ids(processor)


def test_active_params_match_glm45v(token_ids: dict[str, int]) -> None:
    config = infer.glm45v_width_config(FULL_LAYERS, 24, token_ids, infer.Shrink())
    assert infer.text_active_params(config.text_config, FULL_LAYERS) == pytest.approx(12.18e9, rel=0.01)


def test_flop_model_reproduces_performance_doc(token_ids: dict[str, int]) -> None:
    config = infer.glm45v_width_config(4, 24, token_ids, infer.Shrink())
    full = infer.prefill_flops(config, 2224, CLIP_GRID, layers=FULL_LAYERS)
    assert sum(full.values()) == pytest.approx(72.9e12, rel=0.02)
    reduced = infer.prefill_flops(config, 2224, CLIP_GRID)
    # Only the text layers shrink with depth; vision and the LM head do not.
    assert reduced["vision"] == full["vision"] and reduced["lm_head"] == full["lm_head"]
    assert reduced["text"] == pytest.approx(full["text"] * 4 / FULL_LAYERS, rel=0.02)
    two = infer.prefill_flops(config, 2224, CLIP_GRID * 2)
    assert sum(two.values()) == pytest.approx(2 * sum(reduced.values()))


@pytest.mark.parametrize(
    ("name", "peak"), [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H200", 989.0)]
)
def test_peak_detection(name: str, peak: float) -> None:
    assert infer.detect_peak(name, None) == peak
    assert infer.detect_peak(name, 500.0) == 500.0
    assert infer.detect_peak("Some Future GPU", None) is None


def test_gpu_path_runs_end_to_end_at_shrunk_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    args = infer.parse_args(
        [
            "--gpu",
            "--layers",
            "2",
            "--vision-depth",
            "1",
            "--batches",
            "1,2",
            "--repeats",
            "1",
            "--decode-steps",
            "2",
            "--peak",
            "1",
        ]
    )
    shrink = infer.Shrink(
        text={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 128,
            "moe_intermediate_size": 32,
            "n_routed_experts": 8,
            "num_experts_per_tok": 2,
        },
        vision={"hidden_size": 32, "num_heads": 2, "out_hidden_size": 64, "intermediate_size": 128},
    )
    infer.run_gpu(args, device="cpu", shrink=shrink)
    out = capsys.readouterr().out
    assert "built 2-layer GLM-4.5V-width model" in out
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)%", out, re.MULTILINE)
    assert [int(r[0]) for r in rows] == [1, 2], out
    one, two = (int(r[1]) for r in rows)
    assert one == two > 2000  # the same clip shape, so no padding; ~2,224 tokens with the prompt
    assert all(float(r[3]) > 0 for r in rows)
    assert out.count("FLOP split: text") == 2
