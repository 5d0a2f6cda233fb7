"""Media files for tests, generated with PyAV (no binary fixtures in the repo)."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vstream.media.synth import _frame_image, make_sample_video


def sample(tmp: Path, name: str = "s.mp4", **kw: object) -> Path:
    return make_sample_video(tmp / name, **kw)  # type: ignore[arg-type]


def vfr_video(path: Path, times: list[float], width: int = 320, height: int = 180) -> Path:
    """H.264 in MKV with frames at exactly the given times (variable frame rate)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=1000)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"bf": "0", "g": "30"}
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(_frame_image(i, width, height, 30.0, False), format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100)
        n = int(seconds * 44100)
        for start in range(0, n, 1024):
            samples = np.zeros((1, 1024), np.float32)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def rotated(src: Path, dst: Path, degrees: int = 90) -> Path:
    """Remux with a display-matrix rotation (FFmpeg's CLI writes it; PyAV's muxer metadata does not)."""
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-i",
            str(src),
            "-c",
            "copy",
            "-metadata:s:v:0",
            f"rotate={degrees}",
            str(dst),
        ],
        check=True,
    )
    return dst


def faststart(src: Path, dst: Path) -> Path:
    """The same MP4 with its index (moov) first, as web-served files are: cut short, its index still
    lists the lost frames."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c", "copy", "-movflags", "+faststart", str(dst)],
        check=True,
    )
    return dst


def truncated(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst
