"""The wall-clock anchor of a live connection: settles, never jumps on a late frame, stays monotonic."""

from __future__ import annotations

import itertools

from vstream.media.anchor import AnchorRules, WallAnchor

TRUE = 1000.0  # the wall time media time 0 was really captured at


def test_probing_burst_settles_on_the_least_delayed_frame() -> None:
    anchor = WallAnchor()
    # FFmpeg's probing hands over the first 2 s of frames at once, 2.5 s late; then real time (+20 ms)
    for i in range(50):
        anchor.push(TRUE + 2.5, i / 25)
        assert not anchor.settled
    for i in range(50, 100):
        anchor.push(TRUE + i / 25 + 0.02, i / 25)
    assert anchor.settled
    assert anchor.value == TRUE + 0.02


def test_one_late_frame_does_not_move_it() -> None:
    anchor = WallAnchor()
    for i in range(60):
        anchor.push(TRUE + i / 25 + 0.01, i / 25)
    settled = anchor.value
    assert anchor.push(TRUE + 60 / 25 + 3.0, 60 / 25), "one late frame is just late"
    anchor.push(TRUE + 61 / 25 + 0.01, 61 / 25)
    assert anchor.value == settled


def test_frames_late_for_long_say_the_anchor_no_longer_fits() -> None:
    anchor = WallAnchor(AnchorRules(late_for_s=2.0))
    for i in range(60):
        anchor.push(TRUE + i / 25, i / 25)
    # a stall the timestamps did not cover: every frame now arrives 5 s late
    fits = [anchor.push(TRUE + 5 + i / 25, i / 25) for i in range(60, 160)]
    assert fits[0] and not fits[-1]


def test_an_earlier_frame_lowers_it_without_sending_wall_time_back() -> None:
    anchor = WallAnchor(AnchorRules(settle_s=0.5))
    walls = []
    for i in range(100):
        delay = 0.4 if i < 40 else 0.0  # the network got faster after settling
        anchor.push(TRUE + i / 25 + delay, i / 25)
        if anchor.settled:
            walls.append(anchor.value + i / 25)  # type: ignore[operator]
    assert all(b > a for a, b in itertools.pairwise(walls))
    assert anchor.value is not None and abs(anchor.value - TRUE) < 0.05


def test_max_hold_settles_a_source_that_keeps_improving() -> None:
    anchor = WallAnchor(AnchorRules(max_hold_s=3.0))
    for i in range(200):  # arrival faster than media time forever (a source catching up)
        anchor.push(TRUE + i * 0.02, i / 25)
    assert anchor.settled
