import pytest

from vstream.media.frames import SourceError, sample_times, target_size


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [
        ((1920, 1080), 448, (448, 252)),
        ((1280, 720), 448, (448, 252)),
        ((1080, 1920), 448, (252, 448)),
        ((7680, 4320), 672, (672, 392)),
        ((100, 60), 448, (112, 56)),  # never enlarged beyond rounding to the patch grid
        ((641, 359), 448, (448, 252)),
        ((10, 10), 448, (28, 28)),
    ],
)
def test_target_size_is_a_multiple_of_28(
    size: tuple[int, int], max_side: int, expected: tuple[int, int]
) -> None:
    w, h = target_size(*size, max_side)
    assert (w, h) == expected and w % 28 == 0 and h % 28 == 0


def test_target_size_rejects_empty_frames() -> None:
    with pytest.raises(SourceError):
        target_size(0, 10, 448)


def test_sampling_30fps_at_2fps_picks_every_15th_frame() -> None:
    idx = list(sample_times([i / 30 for i in range(1800)], 2.0))
    assert idx == list(range(0, 1800, 15))


def test_sampling_never_duplicates_when_source_is_slower() -> None:
    assert list(sample_times([float(i) for i in range(5)], 2.0)) == [0, 1, 2, 3, 4]


def test_sampling_picks_nearest_frame_with_gaps() -> None:
    times = [0.0, 0.1, 0.45, 0.62, 0.9, 1.2]
    assert [times[i] for i in sample_times(times, 2.0)] == [0.0, 0.45, 0.9]


def test_sampling_starts_at_an_aligned_target() -> None:
    times = [i / 30 for i in range(300)]
    idx = list(sample_times(times, 2.0, start=4.1))
    assert times[idx[0]] == pytest.approx(4.5)
