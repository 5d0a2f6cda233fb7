"""Live sources: drop-oldest buffering, reconnection to a real ffmpeg server, realtime replay."""

from __future__ import annotations

import functools
import itertools
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tests.media_fixtures import faststart, sample
from vstream.config import DecodeSettings
from vstream.media.frames import Frame, SourceError
from vstream.media.live import Backoff, DropOldestBuffer
from vstream.media.source import open_source
from vstream.schema import ClipParams

IMG = np.zeros((28, 28, 3), np.uint8)


def test_full_buffer_drops_the_oldest_and_counts() -> None:
    buf = DropOldestBuffer(3)
    for i in range(5):
        buf.put(Frame(IMG, float(i)))
    buf.close()
    assert buf.dropped == 2
    assert [f.t for f in iter(buf.get, None)] == [2.0, 3.0, 4.0]


def test_buffer_reraises_the_producer_error_after_draining() -> None:
    buf = DropOldestBuffer(4)
    buf.put(Frame(IMG, 0.0))
    buf.close(SourceError("camera gone", fatal=False))
    assert buf.get() is not None
    with pytest.raises(SourceError, match="camera gone"):
        buf.get()


def test_consumer_waits_for_a_slow_producer() -> None:
    buf = DropOldestBuffer(4)

    def produce() -> None:
        buf.put(Frame(IMG, 1.0))
        buf.close()

    threading.Timer(0.3, produce).start()
    assert buf.get() is not None and buf.get() is None


def test_backoff_grows_exponentially_and_is_capped() -> None:
    b = Backoff(initial_s=1, max_s=8)
    delays = [b.delay(n) for n in range(1, 7)]
    assert 0.8 <= delays[0] <= 1.2 and 3.2 <= delays[2] <= 4.8
    assert all(d <= 8 * 1.2 for d in delays)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(src: Path, url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-i", str(src), "-c", "copy", "-f", "mpegts", "-listen", "1", url]
    )
    time.sleep(0.4)
    return proc


def test_live_stream_reconnects_and_keeps_time_increasing(tmp_path: Path) -> None:
    src = sample(tmp_path, "cam.mp4", seconds=3, width=320, height=180)
    url = f"http://127.0.0.1:{_free_port()}/live.ts"
    servers = [_serve(src, url)]

    def camera_comes_back() -> None:
        servers[0].wait()  # the stream ends and the server exits: the "camera" drops
        time.sleep(0.5)
        servers.append(_serve(src, url))

    threading.Thread(target=camera_comes_back, daemon=True).start()
    decode = DecodeSettings(reconnect_initial_s=0.2, reconnect_max_s=0.5, reconnect_attempts=20)
    live = open_source(url, ClipParams(fps=2, clip_seconds=2, overlap_seconds=0), decode)
    frames: list[Frame] = []
    try:
        for frame in live.frames():
            frames.append(frame)
            if live.reconnects >= 1 and sum(f.t > 3.0 for f in frames) >= 2:  # type: ignore[attr-defined]
                break
    finally:
        live.close()
        for server in servers:
            server.kill()
    times = [f.t for f in frames]
    assert all(b > a for a, b in itertools.pairwise(times)), "media time never goes back"
    assert live.reconnects >= 1  # type: ignore[attr-defined]
    assert all(f.wall is not None for f in frames)
    assert len([t for t in times if t > 3.0]) >= 2, "frames after the reconnect continue the timeline"


def test_unreachable_live_source_gives_up_with_a_clear_error() -> None:
    decode = DecodeSettings(reconnect_initial_s=0.1, reconnect_attempts=2)
    source = open_source(f"rtsp://127.0.0.1:{_free_port()}/cam", ClipParams(), decode)
    with pytest.raises(SourceError, match="gave up after 2 attempts"):
        source.info  # noqa: B018 - the first connect runs in the background; info reports its outcome
    with pytest.raises(SourceError, match="gave up after 2 attempts"):
        list(source.frames())


@pytest.mark.parametrize("scheme", ["udp", "rtsp"])
def test_a_stream_that_never_starts_stops_soon_after_stop_is_set(scheme: str) -> None:
    """Opening returns at once; the first connect (a UDP open that waits for data, or refused RTSP
    connects retried) honours ``stop`` instead of the give-up window (300 s by default)."""
    stop = threading.Event()
    started = time.monotonic()
    source = open_source(
        f"{scheme}://127.0.0.1:{_free_port()}/cam", ClipParams(), DecodeSettings(), stop=stop
    )
    assert time.monotonic() - started < 1.0, "opening a live URL must not wait for the stream"
    threading.Timer(1.0, stop.set).start()
    info = source.info
    frames = list(source.frames())
    source.close()
    took = time.monotonic() - started
    assert took < 3.5, f"stopped {took - 1.0:.1f} s after stop.set()"
    assert info.live and frames == []


def test_ingest_of_a_stream_that_never_starts_is_interrupted_by_stop() -> None:
    from vstream.ingest import open_for, run_ingest
    from vstream.schema import IngestRequest

    req = IngestRequest(job_id="never", stream_id="never", source=f"udp://127.0.0.1:{_free_port()}")
    stop = threading.Event()
    source = open_for(req, DecodeSettings())  # a caller that does not hand ``stop`` to the open
    threading.Timer(1.0, stop.set).start()
    started = time.monotonic()
    stats = run_ingest(req, source, sink=_NoSink(), stop=stop)
    assert stats.interrupted and stats.clips == 0
    assert time.monotonic() - started < 3.5


class _NoSink:
    def send(self, msg: object) -> None:
        raise AssertionError("nothing to send")


def test_realtime_replay_is_paced_and_wall_clocked(tmp_path: Path) -> None:
    src = sample(tmp_path, "replay.mp4", seconds=2.5, width=320, height=180)
    started = time.time()
    source = open_source(
        str(src), ClipParams(fps=2, clip_seconds=2, overlap_seconds=0), DecodeSettings(), realtime=True
    )
    frames = list(source.frames())
    took = time.time() - started
    assert source.info.live
    assert took >= 2.0, "a 2.5 s file replayed in real time takes about 2.5 s"
    walls = [f.wall for f in frames]
    assert all(w is not None for w in walls)
    assert walls[-1] - walls[0] == pytest.approx(frames[-1].t - frames[0].t, abs=0.01)  # type: ignore[operator]


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[str]:
    """A plain HTTP file server (Range-capable servers and CDNs look the same to FFmpeg for a
    faststart MP4 read front to back)."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_file_over_http_is_read_once_and_ends(tmp_path: Path, http_files: str) -> None:
    faststart(sample(tmp_path, "raw.mp4", seconds=3, width=320, height=180), tmp_path / "clip.mp4")
    source = open_source(
        f"{http_files}/clip.mp4",
        ClipParams(fps=2, clip_seconds=2, overlap_seconds=0),
        DecodeSettings(reconnect_initial_s=0.1),
    )
    frames: list[Frame] = []
    done = threading.Event()

    def read() -> None:
        frames.extend(source.frames())
        done.set()

    threading.Thread(target=read, daemon=True).start()
    ended = done.wait(30)
    source.close()
    assert ended, f"a 3 s file was still being read after 30 s ({len(frames)} frames)"
    assert [f.t for f in frames] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], abs=0.04)
    assert not source.info.live and source.info.duration == pytest.approx(3.0, abs=0.05)
    assert all(f.wall is None for f in frames), "a file has no wall clock"
