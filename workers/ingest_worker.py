"""``vstream worker ingest``: turns ingest requests from Kafka into clips on Kafka.

Flow: request topic -> job record in Redis (idempotent by job id) -> offset commit -> leased job run in a
thread -> clips topic. Progress (the highest clip index Kafka acknowledged) is saved as clips are acked,
so a job interrupted by SIGTERM, a crash or SIGKILL resumes where it stopped, on any worker.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import redis
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from pydantic import ValidationError

from vstream.blobstore import open_blob_store
from vstream.config import Settings
from vstream.ingest import IngestStats, describe, open_for, run_ingest
from vstream.jobs import ACTIVE, JobStore
from vstream.kafka_io import ClipPublisher, ensure_topics, make_consumer, make_producer
from vstream.media.frames import SourceError
from vstream.metrics import Counters
from vstream.names import Keys, Topics
from vstream.redis_conn import connect
from vstream.retry import backoff_s
from vstream.schema import ClipMessage, IngestError, IngestRequest, redact_text, redact_url
from workers.base import Heartbeat, HeartbeatWriter, new_worker_id, stop_on_signals

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
_RETRY_BASE_S = 2.0
_RETRY_CAP_S = 300.0
HEARTBEAT_TTL_S = 30


class IngestHeartbeat(Heartbeat):
    jobs: int  # jobs running on this worker


@dataclass
class _Running:
    thread: threading.Thread
    stop: threading.Event = field(default_factory=threading.Event)


class _ProgressSink:
    """Publishes clips and saves the acknowledged index as it advances."""

    def __init__(
        self, publisher: ClipPublisher, jobs: JobStore, req: IngestRequest, counters: Counters
    ) -> None:
        self.publisher, self.jobs, self.req, self.counters = publisher, jobs, req, counters
        self.saved = publisher.acked_index
        self.last_index: int | None = None

    def send(self, msg: ClipMessage) -> None:
        self.publisher.send(msg)
        self.counters.add("clips_produced", stream=self.req.stream_id)
        if msg.last:
            self.last_index = msg.index
        self.save()

    def save(self) -> None:
        if self.publisher.acked_index > self.saved:
            self.jobs.set_acked_index(self.req, self.publisher.acked_index)
            self.saved = self.publisher.acked_index
            if self.last_index is not None and self.saved >= self.last_index:
                # done as soon as the final clip is acknowledged: a crash after this point must not
                # make a restart decode past the end of the file and fail a complete job
                self.jobs.transition(self.req.job_id, "done", ("running",), error="")


class JobRunner:
    """Runs one job to completion, interruption or failure; never raises."""

    def __init__(
        self, settings: Settings, jobs: JobStore, producer: KafkaProducer, topics: Topics, owner: str
    ) -> None:
        self.settings, self.jobs, self.producer, self.topics, self.owner = (
            settings,
            jobs,
            producer,
            topics,
            owner,
        )
        self.blobs = open_blob_store(settings.blobs)
        self.counters = Counters(jobs.r, jobs.keys)

    def run(self, job_id: str, stop: threading.Event) -> str:
        state = self.jobs.get(job_id)
        if state is None:
            return "missing"
        req, started = state.request, time.monotonic()
        start_index = state.acked_index + 1
        if not self.jobs.transition(job_id, "running", ACTIVE, owner=self.owner, attempts=state.attempts + 1):
            return state.status  # paused, cancelled or finished through the API after it was picked
        stats = IngestStats(start_index=start_index)
        try:
            stats = self._ingest(req, start_index, stop)
            if not stats.interrupted:
                self.jobs.transition(job_id, "done", ("running",), error="")
                outcome = "done"
            elif self.jobs.transition(job_id, "queued", ("running",), error=""):
                outcome = "interrupted"  # drained: any worker resumes it
            else:
                current = self.jobs.get(job_id)
                outcome = current.status if current else "interrupted"  # paused or cancelled via the API
        except SourceError as exc:
            outcome = self._fail(req, state.attempts + 1, str(exc), fatal=exc.fatal)
        except (KafkaError, redis.RedisError, OSError) as exc:
            error = redact_text(f"{type(exc).__name__}: {exc}")
            outcome = self._fail(req, state.attempts + 1, error, fatal=False)
        self.counters.add("ingest_jobs", outcome=outcome)
        logger.info(
            "ingest job=%s stream=%s outcome=%s queue_delay_s=%.2f resumed_from=%d %s",
            job_id,
            req.stream_id,
            outcome,
            max(0.0, time.time() - req.submitted_at - (time.monotonic() - started)),
            start_index,
            describe(stats, started),
        )
        return outcome

    def _ingest(self, req: IngestRequest, start_index: int, stop: threading.Event) -> IngestStats:
        source = open_for(req, self.settings.decode, start_index, stop=stop)
        self.jobs.record(req.job_id, live=int(source.info.live))  # a URL can be a file (HTTP) or a stream
        publisher = ClipPublisher(
            self.producer,
            self.topics.clips,
            self.blobs,
            self.settings.kafka.max_message_bytes,
        )
        publisher.acked_index = start_index - 1
        sink = _ProgressSink(publisher, self.jobs, req, self.counters)
        stats = run_ingest(
            req, source, sink, quality=self.settings.clips.jpeg_quality, start_index=start_index, stop=stop
        )
        publisher.flush(timeout_s=self.settings.kafka.request_timeout_ms / 1000 * 4)
        sink.save()
        self.counters.add("clips_gated", stats.gated, stream=req.stream_id)
        self.counters.add("live_frames_dropped", stats.dropped_frames, stream=req.stream_id)
        self.counters.add("live_gaps", stats.gaps, stream=req.stream_id)
        self.counters.add("clips_claim_checked", publisher.claim_checked)
        return stats

    def _fail(self, req: IngestRequest, attempts: int, error: str, *, fatal: bool) -> str:
        give_up = fatal or attempts >= MAX_ATTEMPTS
        error = redact_text(error)  # it reaches the job view, the error topic and the log
        if give_up:
            self.jobs.transition(req.job_id, "failed", ("running",), error=error)
        else:
            retry_at = time.time() + backoff_s(attempts, _RETRY_BASE_S, _RETRY_CAP_S, jitter=(1.0, 1.0))
            self.jobs.transition(req.job_id, "retry", ("running",), error=error, retry_at=retry_at)
        record = IngestError(
            job_id=req.job_id,
            stream_id=req.stream_id,
            source=redact_url(req.source),
            error=error,
            fatal=give_up,
        )
        try:
            self.producer.send(
                self.topics.ingest_errors,
                key=req.stream_id.encode(),
                value=record.model_dump_json().encode(),
            )
        except KafkaError:
            logger.exception("could not publish the error record of job %s", req.job_id)
        logger.warning("ingest job=%s %s: %s", req.job_id, "failed" if give_up else "will retry", error)
        return "failed" if give_up else "retry"


class IngestWorker:
    def __init__(self, settings: Settings, *, worker_id: str | None = None) -> None:
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self.topics, self.keys = Topics(settings.kafka.topic_prefix), Keys(settings.redis.key_prefix)
        self.redis = connect(settings.redis)
        self.jobs = JobStore(self.redis, self.keys, settings.job_lease_s)
        self.stopping = threading.Event()
        self.running: dict[str, _Running] = {}
        self.beats = HeartbeatWriter(self.keys, "ingest", self.worker_id, ttl_s=HEARTBEAT_TTL_S)

    def run(self) -> int:
        self.redis.ping()  # fail loudly at start-up, not at the first job
        ensure_topics(
            self.settings.kafka,
            {
                self.topics.ingest_requests: 1,
                self.topics.ingest_errors: 1,
                self.topics.clips: self.settings.kafka.clip_partitions,
            },
        )
        stop_on_signals(self.stopping)
        producer = make_producer(self.settings.kafka, client_id=f"vstream-ingest-{self.worker_id}")
        consumer = make_consumer(self.settings.kafka, self.topics.ingest_group, self.topics.ingest_requests)
        runner = JobRunner(self.settings, self.jobs, producer, self.topics, self.worker_id)
        logger.info("ingest worker %s started (max %d jobs)", self.worker_id, self.settings.worker_max_jobs)
        try:
            while not self.stopping.is_set():
                self._take_requests(consumer)
                self._renew_and_reap()
                self._start_jobs(runner)
                self._heartbeat()
        finally:
            self._drain()
            consumer.close()
            producer.flush(timeout=30)
            producer.close(timeout=10)
            logger.info("ingest worker %s stopped", self.worker_id)
        return 0

    def _take_requests(self, consumer: KafkaConsumer) -> None:
        batches = consumer.poll(timeout_ms=500)
        for records in batches.values():
            for record in records:
                try:
                    req = IngestRequest.model_validate_json(record.value)
                except ValidationError as exc:
                    logger.warning(
                        "ignoring malformed ingest request at offset %d: %s",
                        record.offset,
                        exc.errors()[0]["msg"],
                    )
                    continue
                if not self.jobs.submit(req):
                    logger.info("ingest request %s already known: not queued again", req.job_id)
        if batches:
            consumer.commit()

    def _renew_and_reap(self) -> None:
        for job_id, run in list(self.running.items()):
            if not run.thread.is_alive():
                self.jobs.release(job_id, self.worker_id)
                del self.running[job_id]
            elif not self.jobs.renew(job_id, self.worker_id):
                logger.warning("lost the lease of job %s: stopping it", job_id)
                run.stop.set()
            elif (state := self.jobs.get(job_id)) is not None and state.status in ("paused", "cancelled"):
                logger.info("job %s was %s: stopping it after the current clip", job_id, state.status)
                run.stop.set()

    def _start_jobs(self, runner: JobRunner) -> None:
        free = self.settings.worker_max_jobs - len(self.running)
        if free <= 0:
            return
        for job_id in self.jobs.runnable(limit=free * 4):
            if len(self.running) >= self.settings.worker_max_jobs or job_id in self.running:
                continue
            if not self.jobs.claim(job_id, self.worker_id):
                continue
            run = _Running(
                threading.Thread(
                    target=lambda j=job_id: runner.run(j, self.running[j].stop),
                    name=f"job-{job_id}",
                    daemon=True,
                )
            )
            self.running[job_id] = run
            run.thread.start()

    def _heartbeat(self) -> None:
        self.beats.write(self.redis, IngestHeartbeat(worker_id=self.worker_id, jobs=len(self.running)))

    def _drain(self) -> None:
        for run in self.running.values():
            run.stop.set()
        for job_id, run in self.running.items():
            run.thread.join(timeout=60)
            self.jobs.release(job_id, self.worker_id)
        self.running.clear()


def ingest_once(req: IngestRequest, settings: Settings) -> int:
    """``vstream ingest``: run one request in the foreground (resuming if it ran before)."""
    worker = IngestWorker(settings)
    worker.redis.ping()
    ensure_topics(
        settings.kafka, {worker.topics.clips: settings.kafka.clip_partitions, worker.topics.ingest_errors: 1}
    )
    worker.jobs.submit(req)
    if not worker.jobs.claim(req.job_id, worker.worker_id):
        raise SourceError(f"job {req.job_id} is being run by another worker")
    stop_on_signals(worker.stopping)
    producer = make_producer(settings.kafka)
    keeper = threading.Thread(target=_keep_lease, args=(worker, req.job_id), daemon=True)
    keeper.start()
    try:
        outcome = JobRunner(settings, worker.jobs, producer, worker.topics, worker.worker_id).run(
            req.job_id, worker.stopping
        )
    finally:
        worker.stopping.set()
        producer.close(timeout=10)
        worker.jobs.release(req.job_id, worker.worker_id)
    state = worker.jobs.get(req.job_id)
    if outcome not in ("done", "interrupted") and state is not None:
        raise SourceError(state.error or outcome)
    return 0


def _keep_lease(worker: IngestWorker, job_id: str) -> None:
    while not worker.stopping.wait(worker.settings.job_lease_s / 3):
        worker.jobs.renew(job_id, worker.worker_id)
