"""Every Kafka topic and Redis key name vstream uses, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    prefix: str = "vstream."

    @property
    def ingest_requests(self) -> str:
        return f"{self.prefix}ingest.requests"

    @property
    def clips(self) -> str:
        return f"{self.prefix}clips"

    @property
    def ingest_errors(self) -> str:
        return f"{self.prefix}ingest.errors"

    @property
    def results(self) -> str:
        return f"{self.prefix}results"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}clips.dlq"

    def all(self) -> list[str]:
        return [self.ingest_requests, self.clips, self.ingest_errors, self.results, self.dead_letter]


@dataclass(frozen=True)
class Keys:
    prefix: str = "vstream:"

    def job(self, job_id: str) -> str:
        """Hash: spec, status, progress, error of one ingest job."""
        return f"{self.prefix}job:{job_id}"

    def job_lease(self, job_id: str) -> str:
        """String with a TTL: the worker that currently runs the job."""
        return f"{self.prefix}job:{job_id}:lease"

    @property
    def jobs(self) -> str:
        """Sorted set of job ids by submission time."""
        return f"{self.prefix}jobs"

    def ingest_progress(self, stream_id: str, params_hash: str) -> str:
        """Highest clip index Kafka acknowledged for a stream under one set of clip parameters."""
        return f"{self.prefix}ingest:{stream_id}:{params_hash}:acked"

    def worker_heartbeat(self, kind: str, worker_id: str) -> str:
        return f"{self.prefix}worker:{kind}:{worker_id}"

    @property
    def pattern(self) -> str:
        """Glob that matches every key under this prefix (for cleanup)."""
        return f"{self.prefix}*"
