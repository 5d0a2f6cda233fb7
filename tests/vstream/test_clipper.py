import numpy as np
import pytest

from vstream.clipper import Clipper, cut
from vstream.media.frames import Frame
from vstream.schema import ClipParams

IMG = np.zeros((28, 28, 3), np.uint8)


def frames(n: int, fps: float, t0: float = 0.0) -> list[Frame]:
    return [Frame(IMG, round(t0 + i / fps, 6)) for i in range(n)]


def windows(n: int, fps: float = 2.0, **kw: float) -> list[tuple[int, float, float, list[float], bool]]:
    params = ClipParams(fps=fps, **kw)
    return [(c.index, c.t_start, c.t_end, c.timestamps, c.last) for c in cut(frames(n, fps), params, n / fps)]


def test_60s_windows_step_6s_and_cover_everything() -> None:
    out = windows(120, clip_seconds=8, overlap_seconds=2)
    assert [w[1] for w in out] == [6.0 * k for k in range(10)]
    assert all(len(w[3]) % 2 == 0 and len(w[3]) >= 2 for w in out)
    covered = {t for w in out for t in w[3]}
    assert covered == {i / 2 for i in range(120)}
    assert out[-1][2] == 60.0 and out[-1][4] and not any(w[4] for w in out[:-1])
    assert out[0][3] == [i / 2 for i in range(16)]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 17, 31])
def test_short_and_odd_sources_give_even_clips_that_cover_every_frame(n: int) -> None:
    out = windows(n, clip_seconds=8, overlap_seconds=2)
    assert out, "every non-empty source yields a clip"
    assert all(len(w[3]) % 2 == 0 and len(w[3]) >= 2 for w in out)
    assert {t for w in out for t in w[3]} == {i / 2 for i in range(n)}
    assert out[-1][4]


def test_single_frame_source_repeats_its_frame() -> None:
    assert windows(1, clip_seconds=8, overlap_seconds=2)[0][3] == [0.0, 0.0]


def test_odd_window_borrows_the_previous_frame_not_a_duplicate() -> None:
    out = windows(20, fps=1.5, clip_seconds=5, overlap_seconds=0)
    second = out[1][3]
    assert len(second) == 8 and len(set(second)) == 8
    assert second[0] < 5.0 <= second[1]


def test_resume_from_index_reproduces_the_same_clips() -> None:
    params = ClipParams(fps=2, clip_seconds=8, overlap_seconds=2)
    full = list(cut(frames(120, 2.0), params, 60.0))
    clipper = Clipper(params, start_index=4)
    resumed = [c for f in frames(120, 2.0)[47:] for c in clipper.push(f)] + clipper.finish(60.0)
    assert [(c.index, c.timestamps) for c in resumed] == [(c.index, c.timestamps) for c in full[4:]]


def test_out_of_order_frames_are_ignored() -> None:
    clipper = Clipper(ClipParams(fps=2, clip_seconds=2, overlap_seconds=0))
    out = [c for t in [0.0, 0.5, 0.4, 1.0, 1.5, 1.5, 2.0] for c in clipper.push(Frame(IMG, t))]
    out += clipper.finish()
    assert [c.timestamps for c in out] == [[0.0, 0.5, 1.0, 1.5], [1.5, 2.0]]


def _with_gap(frame: Frame, reason: str = "reconnect") -> Frame:
    from vstream.media.frames import Gap

    return Frame(frame.image, frame.t, frame.wall, frame.clock, frame.slot, Gap(reason, 8.0))  # type: ignore[arg-type]


def test_a_gap_closes_the_open_window_and_marks_the_next_clip() -> None:
    params = ClipParams(fps=2, clip_seconds=8, overlap_seconds=2)  # windows every 6 s
    before = frames(41, 2.0)  # 0 .. 20 s
    after = frames(20, 2.0, t0=28.5)  # the camera is back 8.5 s later
    after[0] = _with_gap(after[0])
    clips = list(cut([*before, *after], params))
    times_before = {f.t for f in before}
    for clip in clips:
        assert set(clip.timestamps) <= times_before or not set(clip.timestamps) & times_before, (
            f"clip {clip.index} spans the gap: {clip.timestamps}"
        )
        assert len(clip.timestamps) % 2 == 0
    covered = {t for c in clips for t in c.timestamps}
    assert covered == times_before | {f.t for f in after}, "no frame lost on either side"
    first_after = next(c for c in clips if 28.5 in c.timestamps)
    assert first_after.gap is not None and first_after.gap.t_before == 20.0
    assert first_after.gap.t_after == 28.5 and first_after.gap.seconds == 8.5
    assert [c.gap is not None for c in clips].count(True) == 1
    indices = [c.index for c in clips]
    assert indices == sorted(set(indices)), "clip ids stay unique and in order"


def test_a_short_gap_inside_an_emitted_window_keeps_its_frames() -> None:
    params = ClipParams(fps=2, clip_seconds=4, overlap_seconds=1)  # windows every 3 s
    before = frames(8, 2.0)  # 0 .. 3.5
    after = frames(8, 2.0, t0=5.0)
    after[0] = _with_gap(after[0], "stall")
    clips = list(cut([*before, *after], params))
    assert {t for c in clips for t in c.timestamps} == {f.t for f in before} | {f.t for f in after}
    marked = next(c for c in clips if c.gap is not None)
    assert min(marked.timestamps) == 5.0 and marked.t_start <= 5.0


def test_a_frame_size_change_starts_a_new_window() -> None:
    big = np.zeros((56, 84, 3), np.uint8)
    params = ClipParams(fps=2, clip_seconds=4, overlap_seconds=0)
    small_frames = frames(5, 2.0)  # 0 .. 2.0
    big_frames = [Frame(big, round(2.5 + i / 2, 6)) for i in range(8)]
    clips = list(cut([*small_frames, *big_frames], params))
    for clip in clips:
        assert len({f.image.shape for f in clip.frames}) == 1, f"clip {clip.index} mixes sizes"
    changed = next(c for c in clips if c.frames[0].image.shape == big.shape)
    assert changed.gap is not None and changed.gap.reason == "resize"
    assert (changed.width, changed.height) == (84, 56)


def test_finish_can_flush_without_marking_the_end() -> None:
    clipper = Clipper(ClipParams(fps=2, clip_seconds=4, overlap_seconds=0))
    for f in frames(5, 2.0):
        clipper.push(f)
    out = clipper.finish(last=False)
    assert out and not any(c.last for c in out)
    assert {t for c in out for t in c.timestamps} >= {2.0}
