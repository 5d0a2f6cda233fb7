"""Ingest benchmark: x-realtime and peak memory of each file decoder path, as ratios to FFmpeg.

    python bench/ingest.py [--seconds 60] [--sizes 720p,1080p]

For each H.264 High file (30 fps, keyframe every 2 s, 2 B-frames) it measures, in the same run:
  * ffmpeg -threads 1 full decode (the baseline: what any decoder must at least do),
  * the whole ``vstream clips`` pipeline at 2 fps (decode, sample, resize to 448, clip, JPEG) with each
    backend: ``decord``, ``pyav`` (full decode) and ``auto`` (PyAV skipping B-frames where that keeps 2 fps),
each in a fresh process with one decoder thread, reporting peak RSS of the process plus its decode child.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
BACKENDS = ("decord", "pyav", "auto")
ROOT = Path(__file__).resolve().parent.parent


def one(path: str, backend: str) -> None:
    """Child mode: run the pipeline once and print a JSON line."""
    from vstream.config import DecodeSettings
    from vstream.ingest import open_for, run_ingest
    from vstream.schema import ClipParams, IngestRequest

    class Null:
        def send(self, msg: object) -> None:
            pass

    req = IngestRequest(
        job_id="bench",
        stream_id="bench",
        source=path,
        params=ClipParams(fps=2, clip_seconds=8, overlap_seconds=2, max_side=448),
    )
    started = time.perf_counter()
    source = open_for(req, DecodeSettings(backend=backend))
    skip = source.info.skip_frame
    stats = run_ingest(req, source, Null())
    took = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": took,
                "media": source.info.duration,
                "clips": stats.clips,
                "skip": skip,
                "rss_mb": own + child,
                "rss_parent_mb": own,
                "rss_decoder_mb": child,
            }
        )
    )


def make_file(size: str, seconds: float) -> Path:
    out = ROOT / "var" / "bench" / f"h264_{size}_{int(seconds)}s.mp4"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    w, h = SIZES[size]
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={w}x{h}:rate=30",
            "-f",
            "lavfi",
            "-i",
            f"life=size={w // 4}x{h // 4}:rate=30:mold=10:ratio=0.5",
            "-filter_complex",
            f"[1]scale={w}:{h}[l];[0][l]blend=all_mode=addition,noise=alls=3:allf=t",
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-profile:v",
            "high",
            "-preset",
            "veryfast",
            "-g",
            "60",
            "-bf",
            "2",
            "-b_strategy",
            "0",
            "-pix_fmt",
            "yuv420p",
            str(out),
        ],
        check=True,
    )
    return out


def ffmpeg_speed(path: Path, seconds: float) -> float:
    started = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-threads", "1", "-i", str(path), "-f", "null", "-"], check=True)
    return seconds / (time.perf_counter() - started)


def measure(path: Path, backend: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--one", str(path), backend], check=True, capture_output=True, text=True
    )
    return cast(dict[str, float], json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--sizes", default="720p,1080p")
    parser.add_argument("--one", nargs=2, metavar=("PATH", "BACKEND"))
    args = parser.parse_args()
    if args.one:
        one(*args.one)
        return
    print(f"{'file':8} {'path':22} {'x realtime':>10} {'vs ffmpeg':>10} {'peak MB':>8}  notes")
    for size in args.sizes.split(","):
        path = make_file(size, args.seconds)
        base = ffmpeg_speed(path, args.seconds)
        print(f"{size:8} {'ffmpeg -threads 1':22} {base:10.1f} {1.0:10.2f} {'':>8}  full decode baseline")
        for backend in BACKENDS:
            r = measure(path, backend)
            speed = r["media"] / r["seconds"]
            print(
                f"{size:8} {'vstream ' + backend:22} {speed:10.1f} {speed / base:10.2f} {r['rss_mb']:8.0f}  "
                f"skip_frame={r['skip']} clips={r['clips']} (parent {r['rss_parent_mb']:.0f} MB, "
                f"decoder {r['rss_decoder_mb']:.0f} MB)"
            )


if __name__ == "__main__":
    main()
