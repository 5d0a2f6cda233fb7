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

    # Consumer groups carry the prefix too: two deployments on one cluster never share a group.
    @property
    def ingest_group(self) -> str:
        return f"{self.prefix}ingest-workers"

    @property
    def infer_group(self) -> str:
        return f"{self.prefix}infer-workers"

    def lag_groups(self) -> dict[str, str]:
        """Consumer group -> the topic it reads, for the lag metric."""
        return {self.infer_group: self.clips, self.ingest_group: self.ingest_requests}


@dataclass(frozen=True)
class Keys:
    """Redis key names. Redis Cluster puts a key in the hash slot of its ``{hash tag}``, and a Lua script or
    MULTI/EXEC may only touch one slot, so:

    - every key of one stream is ``<prefix>{<stream id>}:...``: a clip's whole commit (result, events,
      feed, tracker, progress) is one slot;
    - a job's record and its lease share ``{<job id>}``; a webhook's queue, deliveries and records share
      ``{<webhook id>}``;
    - keys that span streams (job index, ``streams``, the all-streams feed, API keys, counters, the
      webhook due set and cursor) have no tag and are never written in the same atomic block as tagged
      keys.
    """

    prefix: str = "vstream:"

    def __post_init__(self) -> None:
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError(f"key prefix {self.prefix!r} must not contain '{{' or '}}' (hash tags)")

    def _of_stream(self, stream_id: str, name: str) -> str:
        return f"{self.prefix}{{{stream_id}}}:{name}"

    def job(self, job_id: str) -> str:
        """Hash: spec, status, progress, error of one ingest job."""
        return f"{self.prefix}job:{{{job_id}}}"

    def job_lease(self, job_id: str) -> str:
        """String with a TTL: the worker that currently runs the job (same slot as the job)."""
        return f"{self.prefix}job:{{{job_id}}}:lease"

    @property
    def jobs(self) -> str:
        """Sorted set of job ids by submission time."""
        return f"{self.prefix}jobs"

    def ingest_progress(self, stream_id: str, params_hash: str) -> str:
        """Highest clip index Kafka acknowledged for a stream under one set of clip parameters."""
        return self._of_stream(stream_id, f"ingest:{params_hash}:acked")

    def analysis_progress(self, stream_id: str, params_hash: str) -> str:
        """Hash of the same clips' analysis outcomes: ``analysed`` (usable answer), ``failed`` (stored,
        but no usable answer), ``dead_lettered``; ``complete`` once the source's final clip is settled."""
        return self._of_stream(stream_id, f"analysis:{params_hash}")

    def worker_heartbeat(self, kind: str, worker_id: str) -> str:
        return f"{self.prefix}worker:{kind}:{worker_id}"

    # --- analysis results (written by the infer worker, read by the API) ---
    def result(self, stream_id: str, clip_id: str, version: str) -> str:
        """String: ClipResult JSON of one clip under one model + prompt version (the idempotency key)."""
        return self._of_stream(stream_id, f"result:{clip_id}:{version}")

    def results(self, stream_id: str) -> str:
        """Sorted set of result keys by clip start time."""
        return self._of_stream(stream_id, "results")

    def event(self, stream_id: str, event_id: str) -> str:
        """String: Event JSON, stored pre-serialised so the API can return it without re-parsing."""
        return self._of_stream(stream_id, f"event:{event_id}")

    def event_stream(self, event_id: str) -> str:
        """String: the stream id of an event, so ``GET /v1/events/{id}`` finds its stream-tagged key.
        Written before the event itself (outside the stream's slot), with the same TTL."""
        return f"{self.prefix}event-stream:{event_id}"

    def events(self, stream_id: str) -> str:
        """Sorted set of event ids by start time."""
        return self._of_stream(stream_id, "events")

    def thumbnail(self, stream_id: str, event_id: str) -> str:
        """String: JPEG bytes of an event's key frame."""
        return self._of_stream(stream_id, f"thumb:{event_id}")

    def summary(self, stream_id: str) -> str:
        """String: LectureSummary JSON of a segments stream (partial until its last clip)."""
        return self._of_stream(stream_id, "summary")

    def segment(self, stream_id: str, segment_id: str) -> str:
        return self._of_stream(stream_id, f"segment:{segment_id}")

    def segments(self, stream_id: str) -> str:
        """Sorted set of segment ids by start time."""
        return self._of_stream(stream_id, "segments")

    def spans(self, stream_id: str) -> str:
        """Sorted set: collection name (events, segments, captions) -> longest ``end - start`` of its records
        in the stream, so a time-range query can start far enough back to find every overlapping record."""
        return self._of_stream(stream_id, "spans")

    def captions(self, stream_id: str) -> str:
        """Sorted set of CaptionRecord JSON by start time."""
        return self._of_stream(stream_id, "captions")

    def tracker(self, stream_id: str, version: str) -> str:
        """String: TrackerState JSON (open events, last clip applied) of one stream and result version."""
        return self._of_stream(stream_id, f"tracker:{version}")

    def feed(self, stream_id: str) -> str:
        """Redis stream of EventChange JSON for one stream (the live feed, resumable by entry id)."""
        return self._of_stream(stream_id, "feed")

    def feed_relayed(self, stream_id: str) -> str:
        """String: the id of the stream's newest feed entry already copied to ``feed_all`` (the copy is
        outside the stream's transaction, so a crash between the two is caught up by the next commit)."""
        return self._of_stream(stream_id, "feed-relayed")

    @property
    def feed_all(self) -> str:
        return f"{self.prefix}feed:*all*"

    def clip_attempts(self, clip_id: str) -> str:
        """Counter of failed inference attempts of a clip (poison clips go to the dead-letter topic)."""
        return f"{self.prefix}attempts:{clip_id}"

    # --- API ---
    def api_key(self, key_hash: str) -> str:
        """Hash: an API key's record (name, stream patterns), addressed by the SHA-256 of the key."""
        return f"{self.prefix}apikey:{key_hash}"

    @property
    def api_keys(self) -> str:
        """Set of key hashes."""
        return f"{self.prefix}apikeys"

    def stream_jobs(self, stream_id: str) -> str:
        """Set of job ids of one stream."""
        return self._of_stream(stream_id, "jobs")

    def media_token(self, token_hash: str) -> str:
        """String with a TTL: MediaGrant JSON of a short-lived console video token, by the token's SHA-256
        (no hash tag: read and written alone)."""
        return f"{self.prefix}media-token:{token_hash}"

    def webhooks(self, stream_id: str) -> str:
        """Hash: webhook id -> WebhookConfig JSON for one stream."""
        return self._of_stream(stream_id, "webhooks")

    def webhook_deliveries(self, webhook_id: str) -> str:
        """List (newest first, capped) of delivery records of one webhook."""
        return f"{self.prefix}webhook-deliveries:{{{webhook_id}}}"

    def webhook_delivery(self, webhook_id: str, delivery_id: str) -> str:
        """String: DeliveryRecord JSON of one delivery (body included until it is delivered or failed)."""
        return f"{self.prefix}webhook-delivery:{{{webhook_id}}}:{delivery_id}"

    def webhook_queue(self, webhook_id: str) -> str:
        """Sorted set: delivery ids of one webhook that are still to be attempted, by due time."""
        return f"{self.prefix}webhook-queue:{{{webhook_id}}}"

    @property
    def webhook_due(self) -> str:
        """Sorted set: webhook id -> due time of the earliest delivery in its queue (spans webhooks: kept
        out of their scripts and repaired by the dispatcher, see vstream.webhooks)."""
        return f"{self.prefix}webhook-due"

    @property
    def webhook_cursor(self) -> str:
        """String: the feed entry id up to which the webhook dispatcher has delivered."""
        return f"{self.prefix}webhook-cursor"

    @property
    def webhook_dispatcher(self) -> str:
        """String with a TTL: id of the one webhook worker allowed to dispatch (the others stand by)."""
        return f"{self.prefix}webhook-dispatcher"

    @property
    def metrics(self) -> str:
        """Hash of cluster-wide counters (``name|label=value,...`` -> number), see vstream.metrics."""
        return f"{self.prefix}metrics"

    @property
    def streams(self) -> str:
        """Set of stream ids that have results."""
        return f"{self.prefix}streams"

    @property
    def pattern(self) -> str:
        """Glob that matches every key under this prefix (for cleanup: on a cluster, SCAN every primary,
        e.g. with vstream.redis_conn.delete_matching)."""
        return f"{self.prefix}*"
