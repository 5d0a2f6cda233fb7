"""Prometheus metrics shared by the workers and the API."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

CLIPS_PRODUCED = Counter("vstream_clips_produced_total", "Clips published to Kafka", ["stream"])
CLIPS_GATED = Counter("vstream_clips_gated_total", "Clips skipped by the motion gate", ["stream"])
CLIPS_CLAIM_CHECKED = Counter("vstream_clips_claim_checked_total", "Clips sent through the blob store")
FRAMES_DROPPED = Counter(
    "vstream_live_frames_dropped_total", "Live frames dropped by a full buffer", ["stream"]
)
INGEST_JOBS = Counter("vstream_ingest_jobs_total", "Ingest job runs by outcome", ["outcome"])
INGEST_SECONDS = Histogram("vstream_ingest_job_seconds", "Wall time of one ingest job run")
