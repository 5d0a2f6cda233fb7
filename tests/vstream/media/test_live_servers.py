"""Live sources against real media servers (deploy/local/media.sh: GStreamer's RTSP server, nginx-rtmp,
HLS over nginx HTTP) and plain UDP MPEG-TS, with ffmpeg publishers whose frames carry their index.

The scenarios are independent, so they all run at once in one module fixture (the 90 s outage sets the
pace); each test then checks one scenario's clips: no clip spans a gap and the gap is marked, media and
wall times increase and sit on the sampling grid, the wall clock matches capture time (RTSP/RTMP/UDP),
nothing is fabricated or lost between the source and the clips, and giving up says so in one line.
"""

from __future__ import annotations

import itertools
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.media_fixtures import Publisher
from vstream.config import DecodeSettings
from vstream.encode import decode_jpeg
from vstream.ingest import run_ingest
from vstream.media.frames import Frame, SourceError
from vstream.media.source import FrameSource, open_source
from vstream.media.synth import read_barcode
from vstream.schema import ClipMessage, ClipParams, IngestRequest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
HLS_DIR = ROOT / "var" / "media" / "hls"
PARAMS = ClipParams(fps=2, clip_seconds=4, overlap_seconds=1)  # windows every 3 s
# Tests may shorten the backoff; the give-up window stays the default (300 s rides out the 90 s outage).
DECODE = DecodeSettings(reconnect_initial_s=0.5, reconnect_max_s=2.0)
SOURCE_FRAME_S = 1 / 25
CONCURRENT = 4
# A frame keeps its own time, the source frame nearest its sample time k/fps: with a publisher stamping
# frames by its (busy) wall clock, that is up to about two source frames away.
GRID_SLACK_S = 2.5 * SOURCE_FRAME_S
OUTAGE_S = 2.0  # consecutive sampled frames further apart in capture time than this straddle an outage


def rtsp(n: int) -> tuple[list[str], str]:
    return (
        ["-f", "rtp", "-payload_type", "96", f"rtp://127.0.0.1:{5010 + n}?pkt_size=1200"],
        f"rtsp://127.0.0.1:8554/cam{n}",
    )


def rtmp(name: str) -> tuple[list[str], str]:
    return ["-f", "flv", f"rtmp://127.0.0.1:1935/live/{name}"], f"rtmp://127.0.0.1:1935/live/{name}"


def udp(n: int) -> tuple[list[str], str]:
    url = f"udp://127.0.0.1:{5030 + n}"
    return ["-f", "mpegts", f"{url}?pkt_size=1316"], url


def hls(name: str) -> tuple[list[str], str]:
    folder = HLS_DIR / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    out = ["-f", "hls", "-hls_time", "1", "-hls_list_size", "0", str(folder / "index.m3u8")]
    return out, f"http://127.0.0.1:8088/{name}/index.m3u8"


@dataclass
class Run:
    """What one scenario produced."""

    name: str
    protocol: str
    capture: dict[int, float] = field(default_factory=dict)
    clips: list[ClipMessage] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    source_frames: list[Frame] = field(default_factory=list)
    outages: list[tuple[float, float]] = field(default_factory=list)  # wall (from, to) with no publisher
    error: SourceError | None = None
    ended_at: float | None = None  # when run_ingest returned
    finished_at: float | None = None  # when the publisher ended the stream cleanly


class Recorder:
    """A FrameSource wrapper keeping every frame the source delivered (to prove none is lost later)."""

    def __init__(self, source: FrameSource, run: Run) -> None:
        self.source, self.run, self.info = source, run, source.info

    @property
    def dropped(self) -> int:
        return self.source.dropped

    def frames(self) -> Iterator[Frame]:
        for frame in self.source.frames():
            self.run.source_frames.append(frame)
            yield frame

    def close(self) -> None:
        self.source.close()


class Sink:
    def __init__(self, run: Run) -> None:
        self.run = run

    def send(self, msg: ClipMessage) -> None:
        self.run.clips.append(msg)
        self.run.sent_at.append(time.time())


def ingest(run: Run, url: str, stop: threading.Event, decode: DecodeSettings = DECODE) -> threading.Thread:
    def main() -> None:
        req = IngestRequest(job_id=f"j-{run.name}", stream_id=run.name, source=url, params=PARAMS)
        try:
            source = Recorder(open_source(url, PARAMS, decode), run)
            run_ingest(req, source, Sink(run), stop=stop)
        except SourceError as exc:
            run.error = exc
        finally:
            run.ended_at = time.time()

    thread = threading.Thread(target=main, daemon=True, name=f"ingest-{run.name}")
    thread.start()
    return thread


class Camera:
    """What a scenario script drives: publishers (the camera, continuing its frame count) and the reader."""

    def __init__(self, run: Run, output: list[str], url: str) -> None:
        self.run, self.output, self.url = run, output, url
        self.stop = threading.Event()
        self.reader: threading.Thread | None = None

    def publish(self, first: int = 0, **kw: object) -> Publisher:
        return Publisher(self.output, capture=self.run.capture, first=first, **kw)  # type: ignore[arg-type]

    def start_reader(self, decode: DecodeSettings = DECODE) -> None:
        self.reader = ingest(self.run, self.url, self.stop, decode)

    def streaming(self) -> Publisher:
        """The common opening: the camera publishes, the reader starts and has its first clips."""
        pub = self.publish()
        time.sleep(1.0)
        self.start_reader()
        self.wait_clips(2)
        return pub

    def outage(self, pub: Publisher, seconds: float, **kw: object) -> Publisher:
        pub.kill()
        down = time.time()
        time.sleep(seconds)
        self.run.outages.append((down, time.time()))
        return self.publish(pub.next, **kw)

    def wait_clips(self, n: int, timeout: float = 60) -> None:
        """Let the reader get going (opening and probing a stream takes seconds) before things break."""
        deadline = time.time() + timeout
        while len(self.run.clips) < n and self.run.ended_at is None and time.time() < deadline:
            time.sleep(0.2)

    def wait_reader(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while self.run.ended_at is None and time.time() < deadline:
            time.sleep(0.5)


Script = Callable[[Camera], None]


def steady(cam: Camera) -> None:
    pub = cam.publish()
    time.sleep(1.0)
    cam.start_reader()
    time.sleep(20)
    pub.kill()


def killed(seconds: float) -> Script:
    def script(cam: Camera) -> None:
        pub = cam.streaming()
        pub = cam.outage(pub, seconds)
        time.sleep(25)  # backoff, FFmpeg's probing (~5 s for RTMP) and settling, then two windows
        pub.kill()

    return script


def stalled(cam: Camera) -> None:
    pub = cam.streaming()
    down = time.time()
    pub.stall(15)
    cam.run.outages.append((down, time.time()))
    time.sleep(22)
    pub.kill()


def resized(cam: Camera) -> None:
    pub = cam.streaming()
    pub = cam.outage(pub, 0.5, width=480, height=272)
    time.sleep(22)
    pub.kill()


def hls_ends(cam: Camera) -> None:
    pub = cam.publish(seconds=14)
    time.sleep(3.5)  # a playlist with a few segments
    cam.start_reader()
    pub.finish()
    cam.run.finished_at = time.time()
    cam.wait_reader(40)


def never_starts(cam: Camera) -> None:
    cam.start_reader(DecodeSettings(reconnect_initial_s=0.5, reconnect_max_s=2.0, reconnect_give_up_s=12))
    cam.wait_reader(60)


def media_sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "deploy/local/media.sh"), *args], capture_output=True, text=True)


def server_restarted(server: str) -> Script:
    """The media server restarts mid-stream. Over RTSP the publisher feeds the server by UDP and keeps
    going; an RTMP publisher loses its connection and publishes again, continuing its frame count."""

    def script(cam: Camera) -> None:
        pub = cam.streaming()
        down = time.time()
        if server == "nginx":
            pub.kill()
        restarted = media_sh(f"restart-{server}")
        assert restarted.returncode == 0, restarted.stderr
        if server == "nginx":
            pub = cam.publish(pub.next)
        cam.run.outages.append((down, time.time()))
        time.sleep(25)
        pub.kill()

    return script


SCENARIOS: dict[str, tuple[str, tuple[list[str], str], Script]] = {
    "rtmp-killed-90s": ("rtmp", rtmp("killed90"), killed(90)),  # first: it sets the pace
    "rtsp-steady": ("rtsp", rtsp(0), steady),
    "rtmp-steady": ("rtmp", rtmp("steady"), steady),
    "udp-steady": ("udp", udp(0), steady),
    "rtsp-killed-8s": ("rtsp", rtsp(1), killed(8)),
    "rtmp-killed-8s": ("rtmp", rtmp("killed8"), killed(8)),
    "udp-killed-8s": ("udp", udp(1), killed(8)),
    "rtsp-stalled-15s": ("rtsp", rtsp(2), stalled),
    "rtmp-stalled-15s": ("rtmp", rtmp("stalled"), stalled),
    "rtmp-resized": ("rtmp", rtmp("resized"), resized),
    "udp-resized": ("udp", udp(2), resized),
    "hls-ends": ("hls", hls("ends"), hls_ends),
    "rtsp-never-starts": ("rtsp", rtsp(9), never_starts),
    "rtmp-never-starts": ("rtmp", rtmp("nobody"), never_starts),
}
# Run after the others, one at a time: a restart breaks every stream on that server.
RESTARTS: dict[str, tuple[str, tuple[list[str], str], Script]] = {
    "rtsp-server-restarted": ("rtsp", rtsp(3), server_restarted("rtsp")),
    "rtmp-server-restarted": ("rtmp", rtmp("restarted"), server_restarted("nginx")),
}


def play(name: str) -> Run:
    protocol, (output, url), script = SCENARIOS.get(name) or RESTARTS[name]
    cam = Camera(Run(name, protocol), output, url)
    try:
        script(cam)
    finally:
        cam.stop.set()
        if cam.reader is not None:
            cam.reader.join(60)
    return cam.run


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    # `start` is idempotent: it starts whichever server is down (one may be, after an earlier restart test)
    up = subprocess.run([str(ROOT / "deploy/local/media.sh"), "start"], capture_output=True, text=True)
    if up.returncode:
        pytest.fail(f"media servers cannot start: {up.stdout.strip()} {up.stderr.strip()}")
    # a few at a time: a 2-core machine running every publisher, decoder and encoder at once starves them
    with ThreadPoolExecutor(CONCURRENT) as pool:
        futures = {name: pool.submit(play, name) for name in SCENARIOS}
        done = {name: f.result() for name, f in futures.items()}
    for run in done.values():  # shown with a failing test's output
        clips = [(c.index, c.t_start, c.t_end, c.n_frames, c.gap.reason if c.gap else "") for c in run.clips]
        print(f"{run.name}: error={run.error} outages={run.outages} clips={clips}")
    return done


@pytest.fixture(scope="module")
def restart_runs(runs: dict[str, Run]) -> Iterator[dict[str, Run]]:
    """After the concurrent phase (``runs``): each restarts one server; the servers are up at the end."""
    done: dict[str, Run] = {}
    try:
        for name in RESTARTS:
            done[name] = play(name)
            run = done[name]
            clips = [
                (c.index, c.t_start, c.t_end, c.n_frames, c.gap.reason if c.gap else "") for c in run.clips
            ]
            print(f"{run.name}: error={run.error} outages={run.outages} clips={clips}")
        yield done
    finally:
        if media_sh("status").returncode:
            started = media_sh("start")
            assert started.returncode == 0, f"media servers not restored: {started.stderr}"


@dataclass(frozen=True)
class Seen:
    """One sampled frame as it came out in a clip."""

    t: float
    wall: float | None
    n: int  # its barcode: which published frame it is
    clip: int


def seen(run: Run) -> list[Seen]:
    """Every distinct sampled frame of the clips, in media-time order."""
    out: dict[float, Seen] = {}
    for clip in run.clips:
        walls: list[float | None] = [None] * clip.n_frames
        if clip.wall_timestamps is not None:
            walls = list(clip.wall_timestamps)
        for t, wall, jpeg in zip(clip.timestamps, walls, clip.frames, strict=True):
            out.setdefault(t, Seen(t, wall, read_barcode(decode_jpeg(jpeg)), clip.index))
    return [out[t] for t in sorted(out)]


def check_clips(run: Run, *, wall_tolerance: float | None = 0.5) -> list[Seen]:
    """The checks every scenario shares; returns the sampled frames for scenario-specific ones."""
    assert run.error is None or "\n" not in str(run.error)
    assert run.clips, f"{run.name}: no clips ({run.error})"
    frames = seen(run)
    # nothing fabricated: each frame is one the camera published, each at most once, in order
    assert all(f.n in run.capture for f in frames), f"{run.name}: a frame nobody published"
    assert all(b.n > a.n for a, b in itertools.pairwise(frames)), f"{run.name}: a frame replayed or reordered"
    # media and wall times increase, and sit on the sampling grid (within one source frame)
    assert all(b.t > a.t for a, b in itertools.pairwise(frames))
    walls = [f.wall for f in frames]
    if run.protocol != "hls" or walls[0] is not None:
        assert all(w is not None for w in walls), f"{run.name}: a live frame without a wall time"
        assert all(b > a for a, b in itertools.pairwise(walls)), f"{run.name}: wall time went back"  # type: ignore[operator]
    for f in frames:
        off = abs(f.t * PARAMS.fps - round(f.t * PARAMS.fps)) / PARAMS.fps
        assert off <= GRID_SLACK_S, f"{run.name}: t={f.t} is {off:.3f} s off the grid"
    for clip in run.clips:
        k = clip.t_start / (1 / PARAMS.fps)
        assert abs(k - round(k)) < 1e-3, (
            f"{run.name}: clip {clip.index} starts off the grid at {clip.t_start}"
        )
    # the wall clock is the capture time, from the first clip on
    if wall_tolerance is not None:
        offsets = [(f.n, round((f.wall or 0.0) - run.capture[f.n], 3)) for f in frames]
        late = [(n, off) for n, off in offsets if abs(off) > wall_tolerance]
        assert not late, f"{run.name}: wall clock off capture time (frame, seconds): {late[:8]}"

    # no clip spans an outage, and the first clip after one says so
    def straddles(a: float, b: float) -> bool:
        return b - a >= OUTAGE_S or any(a < down and b > up for down, up in run.outages)

    for clip in run.clips:
        caps = [run.capture[read_barcode(decode_jpeg(j))] for j in clip.frames]
        assert not any(straddles(a, b) for a, b in itertools.pairwise(caps)), (
            f"{run.name}: clip {clip.index} spans a gap"
        )
    for a, b in itertools.pairwise(frames):
        if straddles(run.capture[a.n], run.capture[b.n]):
            first = min(c.index for c in run.clips if b.t in c.timestamps)
            marked = next(c for c in run.clips if c.index == first)
            assert marked.gap is not None, f"{run.name}: the clip after the gap at {a.t}->{b.t} is not marked"
            assert marked.gap.t_after == pytest.approx(b.t)
    # nothing lost between the source and the clips, and no sample missing while the camera was up
    clipped = {f.t for f in frames}
    assert [f.t for f in run.source_frames if f.t not in clipped] == []
    for a, b in itertools.pairwise(frames):
        gap = run.capture[b.n] - run.capture[a.n]
        if not straddles(run.capture[a.n], run.capture[b.n]):
            assert gap <= 1 / PARAMS.fps + 2 * SOURCE_FRAME_S + 0.05, (
                f"{run.name}: a sample lost between {a.t} and {b.t}"
            )
    return frames


def outage_marked(run: Run, frames: list[Seen]) -> None:
    assert run.outages, "the scenario had an outage"
    gaps = [c.gap for c in run.clips if c.gap is not None]
    assert gaps, f"{run.name}: no clip marks the outage"
    for down, up in run.outages:
        before = [f for f in frames if run.capture[f.n] < down]
        after = [f for f in frames if run.capture[f.n] > up]
        assert before and after, f"{run.name}: frames on both sides of the outage"
        # media time follows the wall clock across the outage (not more, not less than what was missed)
        media = after[0].t - before[-1].t
        real = run.capture[after[0].n] - run.capture[before[-1].n]
        assert media == pytest.approx(real, abs=0.6), (
            f"{run.name}: media jumped {media:.2f} s over {real:.2f} s"
        )


@pytest.mark.parametrize("name", ["rtsp-steady", "rtmp-steady", "udp-steady"])
def test_a_steady_stream_is_clipped_exactly_on_the_wall_clock(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    frames = check_clips(run)
    assert not any(c.gap for c in run.clips)
    assert len(frames) >= 20, f"{name}: {len(frames)} frames over 20 s at 2 fps (less the first open)"
    latency = [
        sent - run.capture[read_barcode(decode_jpeg(c.frames[-1]))]
        for c, sent in zip(run.clips, run.sent_at, strict=True)
    ]
    print(
        f"{name}: capture -> clip latency median {statistics.median(latency):.2f} s, max {max(latency):.2f} s"
    )


@pytest.mark.parametrize(
    "name",
    [
        "rtsp-killed-8s",
        "rtmp-killed-8s",
        "udp-killed-8s",
        "rtmp-killed-90s",
        "rtsp-stalled-15s",
        "rtmp-stalled-15s",
    ],
)
def test_an_outage_closes_the_window_and_marks_the_gap(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    outage_marked(run, check_clips(run))


@pytest.mark.parametrize("name", list(RESTARTS))
def test_a_server_restart_closes_the_window_and_marks_the_gap(
    restart_runs: dict[str, Run], name: str
) -> None:
    run = restart_runs[name]
    outage_marked(run, check_clips(run))
    assert run.error is None, "a restart of a few seconds is ridden out"


@pytest.mark.parametrize("name", ["rtmp-resized", "udp-resized"])
def test_a_resolution_change_starts_a_new_window_with_the_new_size(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    check_clips(run)
    sizes = [(c.width, c.height) for c in run.clips]
    assert sizes[0][0] / sizes[0][1] == pytest.approx(320 / 240, rel=0.1)
    assert sizes[-1][0] / sizes[-1][1] == pytest.approx(480 / 272, rel=0.1)
    for clip in run.clips:
        shapes = {decode_jpeg(j).shape[:2] for j in clip.frames}
        assert shapes == {(clip.height, clip.width)}, f"clip {clip.index} mixes sizes or declares another"
    changed = next(c for c in run.clips if (c.width, c.height) != sizes[0])
    assert changed.gap is not None


def test_a_finished_hls_stream_ends_and_is_not_replayed(runs: dict[str, Run]) -> None:
    run = runs["hls-ends"]
    frames = check_clips(run, wall_tolerance=None)
    assert run.ended_at is not None and run.finished_at is not None, "the job ended by itself"
    assert run.ended_at - run.finished_at < 30
    assert run.error is None and run.clips[-1].last
    assert frames[-1].n >= max(run.capture) - 2 * 25 / PARAMS.fps, "read up to the end"


@pytest.mark.parametrize("name", ["rtsp-never-starts", "rtmp-never-starts"])
def test_a_stream_that_never_starts_gives_up_with_one_clear_line(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    assert run.error is not None and not run.clips
    message = str(run.error)
    assert ("\n" not in message and "gave up after" in message and "cam9" in message) or "nobody" in message
