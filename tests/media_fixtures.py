"""Media files for tests, generated with PyAV (no binary fixtures in the repo)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
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


class Publisher:
    """An ffmpeg "camera" publishing frames that carry their index as a barcode (see
    :func:`vstream.media.synth.read_barcode`), written to ffmpeg in real time.

    ``capture[n]`` is the wall time frame ``n`` was handed to the encoder (its timestamp is n/fps, so a
    publisher starved of CPU falls behind its own clock: keep few running at once): tests compare the
    wall clock a reader gives each sampled frame with it. Several publishers in turn
    (a camera that comes back) share one ``capture`` map and continue the frame count, so a frame index
    is never reused.
    """

    def __init__(
        self,
        output: list[str],
        *,
        capture: dict[int, float] | None = None,
        first: int = 0,
        width: int = 320,
        height: int = 240,
        fps: float = 25.0,
        seconds: float | None = None,
    ) -> None:
        self.capture = capture if capture is not None else {}
        self.width, self.height, self.fps = width, height, fps
        self.next = first
        self.seconds = seconds
        self._run = threading.Event()
        self._run.set()
        self._stop = threading.Event()
        cmd = [
            "ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
            "-framerate", str(fps), "-i", "-", "-fps_mode", "passthrough", "-c:v", "libx264",
            "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(round(fps)), "-bf", "0",
            "-pix_fmt", "yuv420p", *output,
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        self._thread = threading.Thread(target=self._write, daemon=True, name="publisher")
        self._thread.start()

    def _write(self) -> None:
        assert self.proc.stdin is not None
        t0, written = time.time(), 0
        while not self._stop.is_set():
            if self.seconds is not None and written >= self.seconds * self.fps:
                break
            if not self._run.is_set():  # stalled: the connection stays open, nothing is sent
                self._run.wait(0.1)
                t0 = time.time() - written / self.fps
                continue
            delay = t0 + written / self.fps - time.time()
            if delay > 0:
                time.sleep(delay)
            image = _frame_image(self.next, self.width, self.height, self.fps, False)
            try:
                self.proc.stdin.write(image.tobytes())
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                return
            self.capture[self.next] = time.time()
            self.next += 1
            written += 1
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.proc.stdin.close()  # ffmpeg finishes the stream (HLS: #EXT-X-ENDLIST)

    def stall(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (blocking), connection open, then go on in real time."""
        self._run.clear()
        time.sleep(seconds)
        self._run.set()

    def finish(self, timeout: float = 30) -> None:
        """End the stream cleanly (ffmpeg flushes and closes it)."""
        self._stop.set()
        self._thread.join(timeout)
        self.proc.wait(timeout)

    def kill(self) -> None:
        """The camera drops dead (no clean end of stream)."""
        self._stop.set()
        self.proc.kill()
        self.proc.wait(10)
        self._thread.join(10)
