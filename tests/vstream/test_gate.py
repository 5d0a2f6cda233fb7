import numpy as np

from vstream.clipper import Clip
from vstream.gate import MotionGate
from vstream.media.frames import Frame
from vstream.schema import GateParams


def make_clip(index: int, images: list[np.ndarray]) -> Clip:
    return Clip(
        index, float(index), float(index + 1), tuple(Frame(im, index + k / 10) for k, im in enumerate(images))
    )


def still(v: int) -> np.ndarray:
    return np.full((252, 448, 3), v, np.uint8)


def moving(x: int) -> np.ndarray:
    img = still(80)
    img[100:160, x : x + 60] = 250
    return img


def test_disabled_gate_passes_everything() -> None:
    gate = MotionGate(GateParams(enabled=False))
    assert gate.passes(make_clip(0, [still(1), still(1)]))


def test_still_clips_are_skipped_and_counted_moving_ones_pass() -> None:
    gate = MotionGate(GateParams(enabled=True, threshold=2.0))
    assert gate.passes(make_clip(0, [moving(0), moving(100)]))
    assert not gate.passes(make_clip(1, [moving(100), moving(100)]))
    assert not gate.passes(make_clip(2, [moving(100), moving(100)]))
    assert gate.passes(make_clip(3, [moving(100), moving(300)]))
    assert gate.skipped == 2


def test_a_change_between_clips_counts_as_motion() -> None:
    gate = MotionGate(GateParams(enabled=True, threshold=2.0))
    assert gate.passes(make_clip(0, [moving(0), moving(200)]))
    assert gate.passes(make_clip(1, [still(30), still(30)])), "the scene changed since the last clip"


def test_sensor_noise_below_threshold_is_not_motion() -> None:
    rng = np.random.default_rng(0)
    base = still(100).astype(np.int16)
    noisy = [np.clip(base + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8) for _ in range(4)]
    gate = MotionGate(GateParams(enabled=True, threshold=4.0))
    gate.passes(make_clip(0, noisy[:2]))
    assert not gate.passes(make_clip(1, noisy[2:]))


def test_the_final_clip_passes_even_when_still() -> None:
    gate = MotionGate(GateParams(enabled=True, threshold=2.0))
    assert gate.passes(make_clip(0, [moving(0), moving(100)]))
    final = make_clip(1, [moving(100), moving(100)])
    assert not gate.passes(final)
    assert gate.passes(Clip(final.index, final.t_start, final.t_end, final.frames, last=True))
