"""``vstream worker infer``: clips from Kafka -> GLM-4.5V -> results in Redis (and on the results topic).

Offsets are committed only after a clip's result is durably written (at-least-once); the write is
idempotent by clip id + model + prompt hash (exactly-once effect). A clip's attempts are counted in Redis
*before* it runs, so one that keeps failing, or keeps crashing the process, ends on the dead-letter topic
instead of blocking its partition forever.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Sequence

import redis
from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from vstream.analysis.analyzer import Analysis, ClipAnalyzer
from vstream.blobstore import LocalBlobStore
from vstream.config import Settings
from vstream.kafka_io import ensure_topics, make_consumer, make_producer
from vstream.metrics import Counters
from vstream.model.base import ModelBackend
from vstream.model.factory import make_backend
from vstream.names import Keys, Topics
from vstream.schema import ClipMessage, SchemaError, decode_clip
from vstream.store import ResultStore, load_segments

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
SUMMARY_EVERY_CLIPS = 10
EXIT_STUCK = 3


class InferWorker:
    def __init__(
        self, settings: Settings, backend: ModelBackend | None = None, *, worker_id: str | None = None
    ):
        self.settings = settings
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.topics, self.keys = Topics(settings.kafka.topic_prefix), Keys(settings.redis.key_prefix)
        self.redis = redis.Redis.from_url(settings.redis.url)
        self.store = ResultStore(self.redis, self.keys, retention_s=settings.retention_s)
        self.counters = Counters(self.redis, self.keys)
        self._backend = backend
        self._active_backend: ModelBackend | None = backend
        self.stopping = threading.Event()
        self.processed = 0

    def run(self) -> int:
        self.redis.ping()
        ensure_topics(
            self.settings.kafka,
            {
                self.topics.clips: self.settings.kafka.clip_partitions,
                self.topics.results: self.settings.kafka.clip_partitions,
                self.topics.dead_letter: 1,
            },
        )
        backend = self._backend or make_backend(self.settings.model)
        self._active_backend = backend
        m = self.settings.model
        analyzer = ClipAnalyzer(
            backend,
            LocalBlobStore(self.settings.blobs.root),
            thinking=m.thinking,
            max_new_tokens=m.max_new_tokens,
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        consumer = make_consumer(
            self.settings.kafka,
            self.topics.infer_group,
            self.topics.clips,
            max_poll_records=m.max_batch,
            max_poll_interval_ms=int(m.clip_timeout_s * 1000) + 60_000,
        )
        producer = make_producer(self.settings.kafka, client_id=f"vstream-infer-{self.worker_id}")
        logger.info(
            "infer worker %s started: model %s (%s), batch %d",
            self.worker_id,
            backend.model_id,
            m.type,
            m.max_batch,
        )
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inference")
        try:
            while not self.stopping.is_set():
                records = self._collect(consumer)
                self._heartbeat(len(records))
                if records:
                    self._process(records, analyzer, producer, pool)
                    producer.flush(timeout=30)
                    consumer.commit()  # only now: every result of this batch is durably in Redis
        finally:
            consumer.close(autocommit=False)
            producer.close(timeout=10)
            pool.shutdown(wait=False, cancel_futures=True)
            backend.close()
            logger.info("infer worker %s stopped after %d clips", self.worker_id, self.processed)
        return 0

    def _collect(self, consumer: KafkaConsumer) -> list[ConsumerRecord]:
        """Micro-batch: up to max_batch clips, waiting at most max_wait_s once the first one arrived."""
        m = self.settings.model
        records: list[ConsumerRecord] = []
        deadline: float | None = None
        while len(records) < m.max_batch and not self.stopping.is_set():
            wait_ms = 500 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            for batch in consumer.poll(timeout_ms=wait_ms, max_records=m.max_batch - len(records)).values():
                records.extend(batch)
            if records and deadline is None:
                deadline = time.monotonic() + m.max_wait_s
            if deadline is None or time.monotonic() >= deadline:
                break
        return records

    def _process(
        self,
        records: list[ConsumerRecord],
        analyzer: ClipAnalyzer,
        producer: KafkaProducer,
        pool: concurrent.futures.ThreadPoolExecutor,
    ) -> None:
        clips: list[ClipMessage] = []
        for record in records:
            try:
                clips.append(decode_clip(record.value))
            except SchemaError as exc:
                self._dead_letter(producer, record.value, record.key, f"undecodable clip message: {exc}")
        todo = [c for c in clips if not self._done_or_poison(c, producer)]
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if not todo:
                return
            started = time.monotonic()
            future = pool.submit(analyzer.run, todo)
            try:
                analyses = future.result(timeout=self.settings.model.clip_timeout_s)
            except concurrent.futures.TimeoutError:
                self._stuck(todo)
            took = time.monotonic() - started
            todo = [
                c for c, a in zip(todo, analyses, strict=True) if not self._settle(a, producer, took, attempt)
            ]
            if todo:
                time.sleep(min(2.0**attempt, 10.0))

    def _done_or_poison(self, clip: ClipMessage, producer: KafkaProducer) -> bool:
        """Skip clips already analysed (redelivery); dead-letter clips that failed too often before."""
        spec = self._task_hash(clip)
        if self.store.has_result(clip.clip_id, self._model_id(), spec):
            logger.info(
                "clip %s stream=%s outcome=duplicate (already analysed)", clip.clip_id, clip.stream_id
            )
            return True
        attempts = int(self.redis.incr(self.keys.clip_attempts(clip.clip_id)))
        self.redis.expire(self.keys.clip_attempts(clip.clip_id), 7 * 86400)
        if attempts > MAX_ATTEMPTS:
            self._dead_letter(
                producer,
                None,
                clip.stream_id.encode(),
                f"clip {clip.clip_id} was started {attempts - 1} times without a result",
                clip,
            )
            return True
        return False

    def _settle(self, a: Analysis, producer: KafkaProducer, took: float, attempt: int) -> bool:
        """Store, publish and log one clip; False when it should be tried again."""
        clip = a.clip
        delay = max(0.0, time.time() - clip.produced_at - took)
        if a.result is None:
            if a.retryable and attempt < MAX_ATTEMPTS:
                logger.warning(
                    "clip %s stream=%s outcome=retry attempt=%d error=%s",
                    clip.clip_id,
                    clip.stream_id,
                    attempt,
                    a.error,
                )
                return False
            self._dead_letter(producer, None, clip.stream_id.encode(), a.error or "no result", clip)
            return True
        commit = self.store.commit(a.result, clip, a.parsed)  # type: ignore[arg-type]
        producer.send(
            self.topics.results, key=clip.stream_id.encode(), value=a.result.model_dump_json().encode()
        )
        self.redis.delete(self.keys.clip_attempts(clip.clip_id))
        self.processed += 1
        if clip.task == "segments" and (
            clip.last or clip.index % SUMMARY_EVERY_CLIPS == SUMMARY_EVERY_CLIPS - 1
        ):
            self._summarize(clip)
        outcome = commit.outcome if a.result.ok else f"{commit.outcome}-parse-failure"
        self.counters.add("clips_analysed", outcome=commit.outcome)
        self.counters.add("model_seconds", a.result.model_seconds)
        if not a.result.ok:
            self.counters.add("parse_failures", stream=clip.stream_id)
        logger.info(
            "clip %s stream=%s outcome=%s queue_delay_s=%.2f model_s=%.2f events=%d changes=%d tokens=%d",
            clip.clip_id,
            clip.stream_id,
            outcome,
            delay,
            a.result.model_seconds,
            len(a.result.observations),
            len(commit.changes),
            a.result.visual_tokens,
        )
        return True

    def _summarize(self, clip: ClipMessage) -> None:
        """Refresh the stream's lecture summary (partial until its last clip); a failure only logs."""
        from vstream.journeys.lecture import summarize

        try:
            segments = load_segments(self.redis, self.keys, clip.stream_id)
            summary = summarize(clip.stream_id, segments, self._analyzer_backend(), partial=not clip.last)
            ttl = clip.retention_s or self.settings.retention_s
            self.redis.set(self.keys.summary(clip.stream_id), summary.model_dump_json(), ex=ttl)
            logger.info(
                "summary stream=%s chapters=%d partial=%s covered_until=%.1f",
                clip.stream_id,
                len(summary.chapters),
                summary.partial,
                summary.covered_until,
            )
        except Exception:  # the summary is derived data: never lose the clip's result over it
            logger.exception("summary of stream %s failed", clip.stream_id)

    def _analyzer_backend(self) -> ModelBackend:
        assert self._active_backend is not None
        return self._active_backend

    def _dead_letter(
        self,
        producer: KafkaProducer,
        value: bytes | None,
        key: bytes | None,
        error: str,
        clip: ClipMessage | None = None,
    ) -> None:
        headers = [("error", error[:1000].encode()), ("worker", self.worker_id.encode())]
        payload = (
            value
            if value is not None
            else (clip.model_dump_json(exclude={"frames"}).encode() if clip else b"")
        )
        producer.send(self.topics.dead_letter, key=key, value=payload, headers=headers)
        self.counters.add("dead_letter")
        if clip is not None:
            self.store.count_dead_letter(clip)
        logger.error("clip %s outcome=dead-letter error=%s", clip.clip_id if clip else "?", error)

    def _stuck(self, clips: Sequence[ClipMessage]) -> None:
        """Inference that never returns cannot be interrupted from Python (CUDA, native code): exit so the
        supervisor restarts the worker; the uncommitted clips come back, their attempt counts go up."""
        logger.critical(
            "watchdog: inference of %d clips (%s...) exceeded %.0f s; exiting for a restart",
            len(clips),
            clips[0].clip_id,
            self.settings.model.clip_timeout_s,
        )
        logging.shutdown()
        os._exit(EXIT_STUCK)

    def _heartbeat(self, batch: int) -> None:
        value = f'{{"batch": {batch}, "processed": {self.processed}, "at": {time.time():.3f}}}'
        self.redis.set(self.keys.worker_heartbeat("infer", self.worker_id), value, ex=60)

    def _model_id(self) -> str:
        backend = self._active_backend or self._backend
        return backend.model_id if backend is not None else self.settings.model.model

    def _task_hash(self, clip: ClipMessage) -> str:
        from vstream.analysis.tasks import render

        return render(
            clip.task, duration_s=round(clip.t_end - clip.t_start, 3), event_types=clip.event_types
        ).prompt_hash
