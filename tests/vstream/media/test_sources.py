import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.media_fixtures import audio_only, faststart, rotated, sample, truncated, vfr_video
from vstream.config import DecodeSettings
from vstream.media.child import DecodeProcess
from vstream.media.frames import SourceError
from vstream.media.pyav_source import DecodeSpec
from vstream.media.source import open_source
from vstream.media.synth import read_barcode
from vstream.schema import ClipParams


def run_clips(source: str | Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vstream.cli", "clips", str(source), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )


def frames_of(path: Path, backend: str = "auto", fps: float = 2.0) -> list[Any]:
    src = open_source(
        str(path), ClipParams(fps=fps, clip_seconds=8, overlap_seconds=2), DecodeSettings(backend=backend)
    )
    info = src.info
    out = list(src.frames())
    return [info, *out]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("media")
    good = sample(tmp, "good.mp4", seconds=4)
    (tmp / "text.mp4").write_text("this is not a video\n" * 100)
    (tmp / "empty.mp4").write_bytes(b"")
    return {
        "good": good,
        "text": tmp / "text.mp4",
        "empty": tmp / "empty.mp4",
        "audio": audio_only(tmp / "audio.m4a"),
        "head_only": truncated(good, tmp / "head.mp4", 0.05),
        "one_frame": sample(tmp, "one.mp4", seconds=1 / 30),
        "rotated": rotated(sample(tmp, "plain.mp4", seconds=2), tmp / "rot.mp4"),
        "odd": sample(tmp, "odd.mp4", seconds=2, width=334, height=190),
        "vfr": vfr_video(tmp / "vfr.mkv", [0.0, 0.04, 0.5, 0.52, 1.3, 1.31, 2.0, 2.9, 3.0]),
        "8k": sample(tmp, "8k.mp4", seconds=0.5, fps=4, width=7680, height=4320, gop=2, bframes=0),
        "ts_cut": truncated(sample(tmp, "cut.ts", seconds=4), tmp / "cut_half.ts", 0.5),
        "mp4_cut": truncated(faststart(good, tmp / "fast.mp4"), tmp / "cut_fast.mp4", 0.6),
    }


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("text", "not a readable video"),
        ("empty", "empty file"),
        ("audio", "no video stream"),
        ("head_only", "not a readable video"),
        ("missing", "no such file"),
        ("dir", "not a regular file"),
        ("refused", "cannot connect"),
    ],
)
def test_bad_input_gives_one_clear_line_and_nonzero_exit(
    media: dict[str, Path], tmp_path: Path, name: str, message: str
) -> None:
    source = {
        "missing": str(tmp_path / "nope.mp4"),
        "dir": str(tmp_path),
        "refused": "http://127.0.0.1:9/live.ts",
    }.get(name) or media[name]
    env_extra = {"VSTREAM_DECODE__RECONNECT_ATTEMPTS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "vstream.cli", "clips", str(source), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env_extra},
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("vstream: error")]) == 1


@pytest.mark.parametrize("source", ["ftp://host/v.mp4", "file:///tmp/v.mp4", "s3://bucket/v.mp4"])
def test_workers_refuse_unknown_schemes_by_name(source: str) -> None:
    """open_source is what workers call: the scheme is named, not looked up as a file called 'ftp:'."""
    scheme = source.split(":", 1)[0]
    with pytest.raises(SourceError, match=f"unsupported source scheme '{scheme}'"):
        open_source(source, ClipParams(), DecodeSettings())


def test_invalid_parameters_exit_with_a_clear_message(media: dict[str, Path]) -> None:
    proc = run_clips(media["good"], "--max-side", "450")
    assert proc.returncode == 2 and "multiple of 28" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("backend", ["auto", "pyav", "decord"])
def test_every_backend_returns_the_frames_nearest_each_sample_time(
    media: dict[str, Path], backend: str
) -> None:
    info, *frames = frames_of(media["good"], backend)
    assert (info.out_width, info.out_height) == (448, 252)
    assert [round(f.t * 2) / 2 for f in frames] == [k / 2 for k in range(8)]
    for f in frames:
        index = read_barcode(f.image)
        assert abs(index / 30 - f.t) < 1e-3, "timestamp is the decoded frame's own PTS"
        assert abs(f.t - round(f.t * 2) / 2) <= 1 / 30 + 1e-6


def test_one_frame_video_gives_one_clip_of_two_frames(media: dict[str, Path]) -> None:
    proc = run_clips(media["one_frame"])
    assert proc.returncode == 0, proc.stderr
    (clip,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert clip["n_frames"] == 2 and clip["timestamps"] == [0.0, 0.0]


@pytest.mark.parametrize("backend", ["auto", "decord"])
def test_rotation_metadata_is_applied(media: dict[str, Path], backend: str) -> None:
    info, first, *_ = frames_of(media["rotated"], backend)
    assert info.rotation == 90 and (info.width, info.height) == (360, 640)
    assert first.image.shape == (448, 252, 3)
    assert read_barcode(np.rot90(first.image, -1)) == 0  # undo the display rotation: the original frame 0


def test_odd_sizes_are_rounded_to_the_patch_grid(media: dict[str, Path]) -> None:
    info, first, *_ = frames_of(media["odd"])
    assert first.image.shape[0] % 28 == 0 and first.image.shape[1] % 28 == 0
    assert (info.width, info.height) == (334, 190)


def test_variable_frame_rate_uses_real_timestamps(media: dict[str, Path]) -> None:
    _, *frames = frames_of(media["vfr"])
    # frames at 0, .04, .5, .52, 1.3, 1.31, 2, 2.9, 3: the nearest to each k/2, none twice
    assert [f.t for f in frames] == [0.0, 0.5, 1.3, 1.31, 2.0, 2.9, 3.0]


def test_8k_is_decoded_and_shrunk(media: dict[str, Path]) -> None:
    info, first, *_ = frames_of(media["8k"], fps=2)
    assert (info.width, info.height) == (7680, 4320)
    assert first.image.shape == (252, 448, 3)


@pytest.mark.parametrize("name", ["ts_cut", "mp4_cut"])
def test_truncated_stream_yields_what_is_decodable(media: dict[str, Path], name: str) -> None:
    proc = run_clips(media[name])
    assert proc.returncode == 0, proc.stderr
    clips = [json.loads(line) for line in proc.stdout.splitlines()]
    # 4 s cut at about half: the frames before the cut come out, none is invented after it
    assert clips and 1.0 < clips[-1]["timestamps"][-1] < 3.5, clips[-1]["timestamps"]


def test_a_decoder_hung_in_native_code_is_killed_with_a_clear_error(tmp_path: Path) -> None:
    fifo = tmp_path / "hang.mp4"
    os.mkfifo(fifo)  # FFmpeg's open() blocks forever in C waiting for a writer
    with pytest.raises(SourceError, match="stalled"):
        DecodeProcess(DecodeSpec(str(fifo), 2.0, 448), stall_timeout_s=1.0)


def test_decoder_child_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    """SIGKILL of a worker must not leave its decoder running as an orphan."""
    import signal
    import time

    video = sample(tmp_path, "v.mp4", seconds=10, width=320, height=180)
    script = (
        "import sys, time\n"
        "from vstream.media.child import DecodeProcess\n"
        "from vstream.media.pyav_source import DecodeSpec\n"
        "if __name__ == '__main__':\n"
        f"    d = DecodeProcess(DecodeSpec({str(video)!r}, 2.0, 448), stall_timeout_s=30)\n"
        "    print(d._proc.pid, flush=True)\n"
        "    time.sleep(60)\n"
    )
    (tmp_path / "parent.py").write_text(script)
    root = str(Path(__file__).resolve().parents[3])  # import this tree, whatever the venv points at
    parent = subprocess.Popen(
        [sys.executable, str(tmp_path / "parent.py")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:  # gone, or a zombie waiting for a reaper (this container's init does not reap)
            if "State:\tZ" in Path(f"/proc/{child}/status").read_text():
                return
        except FileNotFoundError:
            return
        time.sleep(0.2)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("the decoder child outlived its killed parent")


def test_a_60s_30fps_video_gives_6s_windows_of_even_frames_at_half_seconds(tmp_path: Path) -> None:
    """The issue's acceptance case, through the real CLI: --fps 2 --clip-seconds 8 --overlap 2."""
    video = sample(tmp_path, "sixty.mp4", seconds=60, width=320, height=180)
    proc = run_clips(video, "--fps", "2", "--clip-seconds", "8", "--overlap", "2")
    assert proc.returncode == 0, proc.stderr
    clips = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [c["t_start"] for c in clips] == [6.0 * k for k in range(10)]
    assert all(c["n_frames"] % 2 == 0 and c["n_frames"] >= 2 for c in clips)
    covered = sorted({t for c in clips for t in c["timestamps"]})
    assert covered[0] == 0.0 and covered[-1] >= 59.5 - 1 / 30 and clips[-1]["t_end"] == 60.0
    assert [c["last"] for c in clips] == [False] * 9 + [True], "the final clip says so"
    for c in clips:
        for t in c["timestamps"]:
            assert abs(t - round(t * 2) / 2) <= 1 / 30 + 1e-6, f"{t} is not k/2 within one source frame"
