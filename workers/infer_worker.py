"""``vstream worker infer``: clips from Kafka -> GLM-4.5V -> results in Redis (and on the results topic).

Pipelined: up to ``model.max_in_flight`` clips are taken and not yet settled, across streams and partitions;
a new clip starts as soon as one finishes (the openai backend gets one request per clip, the in-process
transformers backend micro-batches of ``max_batch`` on one thread). The bookkeeping is in
:mod:`workers.infer_pipeline`.

Offsets are committed per partition only up to the oldest unsettled clip, after its result is durably
written (at-least-once); the write is idempotent by clip id + model + prompt hash (exactly-once effect),
and results are applied in clip order per stream. A clip's attempts are counted in Redis *before* each
run, so one that keeps failing, or keeps crashing the process, ends on the dead-letter topic instead of
blocking its partition forever. A model server that is down or overloaded is not the clips' fault: the
worker stops taking clips, probes with one clip at a time under capped backoff, counts no attempts for
up to ``model.outage_window_s``, reports the outage in its heartbeat, and resumes by itself.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import redis
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata, TopicPartition

from vstream.analysis.analyzer import Analysis, ClipAnalyzer
from vstream.analysis.records import ClipResult
from vstream.blobstore import open_blob_store
from vstream.config import Settings
from vstream.kafka_io import await_partitions, ensure_topics, make_consumer, make_producer
from vstream.metrics import Counters, InferHeartbeat
from vstream.model.base import ModelBackend
from vstream.model.factory import make_backend
from vstream.names import Keys, Topics
from vstream.redis_conn import connect
from vstream.schema import ClipMessage, SchemaError, decode_clip
from vstream.store import ResultStore, load_segments
from vstream.vocabulary import Task
from workers.base import HeartbeatWriter, new_worker_id, stop_on_signals
from workers.infer_pipeline import OutageGate, Pipeline, Slot

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
SUMMARY_EVERY_CLIPS = 10
EXIT_STUCK = 3
DRAIN_S = 30.0  # on SIGTERM, how long running clips may finish before the rest is handed back
COMMIT_EVERY_S = 0.5
HEARTBEAT_EVERY_S = 2.0
RETRY_CAP_S = 10.0

InferSlot = Slot[ClipMessage, Analysis]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: InferWorker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.worker._revoked(revoked)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        logger.info("infer worker %s assigned %s", self.worker.worker_id, sorted(assigned))


class InferWorker:
    def __init__(
        self, settings: Settings, backend: ModelBackend | None = None, *, worker_id: str | None = None
    ):
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self.topics, self.keys = Topics(settings.kafka.topic_prefix), Keys(settings.redis.key_prefix)
        self.redis = connect(settings.redis)
        self.store = ResultStore(self.redis, self.keys, retention_s=settings.retention_s)
        self.counters = Counters(self.redis, self.keys)
        self.blobs = open_blob_store(settings.blobs)
        self._backend = backend
        self._active_backend: ModelBackend | None = backend
        self.stopping = threading.Event()
        self.processed = 0
        m = settings.model
        # the in-process model runs one micro-batch at a time; a server wants many requests in flight
        self.batched = m.type == "transformers"
        self.pipeline: Pipeline[ClipMessage, Analysis] = Pipeline(m.max_in_flight)
        self.gate = OutageGate()
        self._running: dict[Future[list[Analysis]], list[InferSlot]] = {}
        self._backlog: deque[ConsumerRecord] = deque()  # polled, not taken (never committed past)
        self._consumer: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None
        self._last_commit = 0.0
        self.beats = HeartbeatWriter(self.keys, "infer", self.worker_id, ttl_s=60, every_s=HEARTBEAT_EVERY_S)

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
        analyzer = ClipAnalyzer(backend, self.blobs, thinking=m.thinking, max_new_tokens=m.max_new_tokens)
        stop_on_signals(self.stopping)
        consumer = make_consumer(
            self.settings.kafka,
            self.topics.infer_group,
            max_poll_records=m.max_in_flight,
            max_poll_interval_ms=int(m.clip_timeout_s * 1000) + 60_000,
        )
        self._consumer = consumer
        consumer.subscribe([self.topics.clips], listener=_Rebalance(self))
        await_partitions(consumer, [self.topics.clips])
        producer = make_producer(self.settings.kafka, client_id=f"vstream-infer-{self.worker_id}")
        self._producer = producer
        threads = 1 if self.batched else m.max_in_flight
        logger.info(
            "infer worker %s started: model %s (%s), max in flight %d, %s",
            self.worker_id,
            backend.model_id,
            m.type,
            m.max_in_flight,
            f"micro-batches of {m.max_batch}" if self.batched else f"{threads} clips at once",
        )
        pool = ThreadPoolExecutor(threads, thread_name_prefix="inference")
        try:
            while not self.stopping.is_set():
                self._step(consumer, analyzer, pool)
            self._drain(consumer)
        finally:
            consumer.close(autocommit=False)
            producer.close(timeout=10)
            pool.shutdown(wait=False, cancel_futures=True)
            backend.close()
            logger.info("infer worker %s stopped after %d clips", self.worker_id, self.processed)
        return 0

    def _step(self, consumer: KafkaConsumer, analyzer: ClipAnalyzer, pool: ThreadPoolExecutor) -> None:
        self._take(consumer)
        self._dispatch(analyzer, pool)
        self._reap(0.02)
        self._apply()
        self._commit()
        self._watchdog()
        self._heartbeat()

    # --- taking clips ---------------------------------------------------------------------------------

    def _take(self, consumer: KafkaConsumer) -> None:
        """Fill free slots from a local backlog of polled records, polling while the backlog has room.
        The backlog spares a pause/resume (and a re-fetch) each time the pipeline fills up; its records
        are not taken yet, so nothing past them is committed."""
        now = time.monotonic()
        if not self.gate.active:
            while self._backlog and self.pipeline.free() > 0:
                self._taken(self._backlog.popleft(), now)
        room = self.settings.model.max_in_flight - len(self._backlog)
        if room <= 0:
            # paused partitions keep the consumer in its group (poll still runs the coordinator)
            consumer.pause(*consumer.assignment())
            consumer.poll(timeout_ms=0)
            return
        if consumer.paused():
            consumer.resume(*consumer.paused())
        # short waits while clips run, so a freed slot is refilled promptly (a long one only when idle)
        wait_ms = 10 if self._running or self._backlog else 200
        for batch in consumer.poll(timeout_ms=wait_ms, max_records=room).values():
            self._backlog.extend(batch)
        if not self.gate.active:
            while self._backlog and self.pipeline.free() > 0:
                self._taken(self._backlog.popleft(), now)

    def _taken(self, record: ConsumerRecord, now: float) -> None:
        tp = TopicPartition(record.topic, record.partition)
        try:
            clip = decode_clip(record.value)
        except SchemaError as exc:
            self._dead_letter(record.value, record.key, f"undecodable clip message: {exc}")
            self.pipeline.settle(self.pipeline.add(tp, record.offset, "", None, now))  # type: ignore[arg-type]
            return
        slot = self.pipeline.add(tp, record.offset, clip.stream_id, clip, now)
        if self.store.has_result(clip.stream_id, clip.clip_id, self._model_id(), self._task_hash(clip)):
            logger.info(
                "clip %s stream=%s outcome=duplicate (already analysed)", clip.clip_id, clip.stream_id
            )
            self._drop_blob(clip)
            self.pipeline.settle(slot)

    # --- running clips --------------------------------------------------------------------------------

    def _dispatch(self, analyzer: ClipAnalyzer, pool: ThreadPoolExecutor) -> None:
        now = time.monotonic()
        allowed = self.gate.allowed(now)
        ready = self.pipeline.ready(now)
        if self.stopping.is_set() or not ready or allowed == 0:
            return
        if allowed is not None:  # the outage probe: one clip
            ready = ready[:1]
            self.gate.probe_started()
        if self.batched:
            m = self.settings.model
            waited = now - min(s.ready_since for s in ready)
            if self._running or (len(ready) < m.max_batch and waited < m.max_wait_s and allowed is None):
                return
            batches = [ready[: m.max_batch]]
        else:
            batches = [[s] for s in ready]
        for batch in batches:
            todo = [s for s in batch if self._count_attempt(s)]
            for slot in todo:
                self.pipeline.start(slot, now)
            if todo:
                future = pool.submit(analyzer.run, [s.clip for s in todo])
                self._running[future] = todo

    def _count_attempt(self, slot: InferSlot) -> bool:
        """Count this run before it starts; a clip started too often without a result is dead-lettered."""
        clip = slot.clip
        key = self.keys.clip_attempts(clip.clip_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 7 * 86400)
        attempts = slot.attempts = int(pipe.execute()[0])
        if attempts <= MAX_ATTEMPTS:
            return True
        error = f"clip {clip.clip_id} was started {attempts - 1} times without a result"
        self._dead_letter(None, clip.stream_id.encode(), error, clip)
        self.pipeline.settle(slot)
        if self.gate.probing:
            self.gate.probing = False
        return False

    def _reap(self, timeout: float) -> None:
        if not self._running:
            return
        done, _ = concurrent.futures.wait(
            list(self._running), timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED
        )
        for future in done:
            slots = self._running.pop(future)
            try:
                analyses = future.result()
            except Exception as exc:  # analyzer.run does not raise; a bug must still not lose the clips
                logger.exception("inference of %d clips failed", len(slots))
                analyses = [
                    Analysis(s.clip, error=f"inference failed: {exc!r}", retryable=True) for s in slots
                ]
            for slot, analysis in zip(slots, analyses, strict=True):
                if slot.dropped:  # revoked meanwhile: the partition's new owner runs it, and counts that
                    self.redis.decr(self.keys.clip_attempts(slot.clip.clip_id))
                else:
                    self._finished(slot, analysis)

    def _finished(self, slot: InferSlot, a: Analysis) -> None:
        now = time.monotonic()
        window = self.settings.model.outage_window_s
        if a.unavailable:
            if not self.gate.active:
                logger.warning("%s; taking no clips, probing with backoff", a.error)
                self.counters.add("model_outages")
            self.gate.failed(now, slot.started_at, a.error or "unavailable", a.retry_after)
            if not self.gate.longer_than(now, window):
                self.redis.decr(self.keys.clip_attempts(slot.clip.clip_id))  # not the clip's fault
                slot.attempts -= 1
                self.pipeline.again(slot, now, now)
                return
            logger.error("model server unavailable for over %.0f s: attempts count again", window)
        else:
            lasted = self.gate.answered(now)
            if lasted is not None:
                logger.warning("model server answers again after %.1f s of outage; resuming", lasted)
                self.counters.add("model_outage_seconds", lasted)
        attempts = slot.attempts
        if a.result is None and a.retryable and attempts < MAX_ATTEMPTS:
            logger.warning(
                "clip %s stream=%s outcome=retry attempt=%d error=%s",
                slot.clip.clip_id,
                slot.clip.stream_id,
                attempts,
                a.error,
            )
            self.pipeline.again(slot, now + min(2.0**attempts, RETRY_CAP_S), now)
            return
        self.pipeline.finish(slot, a)

    def _watchdog(self) -> None:
        now = time.monotonic()
        limit = self.settings.model.clip_timeout_s
        for slots in self._running.values():
            if slots and now - slots[0].started_at > limit:
                self._stuck([s.clip for s in slots])

    # --- settling -------------------------------------------------------------------------------------

    def _apply(self) -> None:
        """Apply finished clips in clip order per stream, until none is ready to apply."""
        while True:
            slots = self.pipeline.appliable()
            if not slots:
                return
            for slot in slots:
                assert slot.analysis is not None
                self._settle(slot.analysis)
                if slot.analysis.result is not None:
                    self._drop_blob(slot.clip)
                self.pipeline.settle(slot)

    def _settle(self, a: Analysis) -> None:
        """Store, publish and log one clip's result, or dead-letter it."""
        clip = a.clip
        if a.result is None:
            self._dead_letter(None, clip.stream_id.encode(), a.error or "no result", clip)
            return
        delay = max(0.0, time.time() - clip.produced_at - a.result.model_seconds)
        commit = self.store.commit(a.result, clip, a.parsed)  # type: ignore[arg-type]
        assert self._producer is not None
        self._producer.send(
            self.topics.results, key=clip.stream_id.encode(), value=a.result.model_dump_json().encode()
        )
        self._after_commit(clip, commit.outcome, a.result)
        self.processed += 1
        if clip.task == "segments" and (
            clip.last or clip.index % SUMMARY_EVERY_CLIPS == SUMMARY_EVERY_CLIPS - 1
        ):
            self._summarize(clip)
        outcome = commit.outcome if a.result.ok else f"{commit.outcome}-parse-failure"
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

    def _after_commit(self, clip: ClipMessage, outcome: str, result: ClipResult) -> None:
        """The clip's bookkeeping in one round trip: its attempt count goes, its counters go up."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(self.keys.clip_attempts(clip.clip_id))
        self.counters.add_to(pipe, "clips_analysed", outcome=outcome)
        self.counters.add_to(pipe, "model_seconds", result.model_seconds)
        if not result.ok:
            self.counters.add_to(pipe, "parse_failures", stream=clip.stream_id)
        try:
            pipe.execute()
        except redis.RedisError as exc:  # the result is stored; a leftover count expires by itself
            logger.warning("clip %s: bookkeeping not written: %s", clip.clip_id, exc)

    def _drop_blob(self, clip: ClipMessage) -> None:
        """A claim-checked clip's frames are not needed once its result is stored (best effort: the
        store's sweep removes what is left)."""
        if not clip.payload_ref:
            return
        try:
            self.blobs.delete(clip.payload_ref)
        except Exception as exc:  # a leftover blob costs storage, never a result
            logger.warning("clip %s: blob %s not deleted: %s", clip.clip_id, clip.payload_ref, exc)

    def _commit(self, tps: Sequence[TopicPartition] | None = None, *, force: bool = False) -> None:
        """Commit each partition up to its oldest unsettled clip, once everything before it is durable."""
        now = time.monotonic()
        if not force and now - self._last_commit < COMMIT_EVERY_S:
            return
        offsets = self.pipeline.to_commit(tps)
        if not offsets:
            return
        assert self._producer is not None and self._consumer is not None
        self._producer.flush(timeout=30)  # results and dead letters acknowledged before their offsets
        self._consumer.commit({tp: OffsetAndMetadata(off, "") for tp, off in offsets.items()})
        self.pipeline.committed(offsets)
        self._last_commit = now

    def _revoked(self, revoked: list[TopicPartition]) -> None:
        """Rebalance: settle what can be, commit it, and forget the rest (the new owner re-runs it)."""
        self._apply()
        try:
            self._commit(revoked, force=True)
        except Exception as exc:  # the group moved on: the new owner re-reads from the last commit
            logger.warning("commit of revoked partitions failed: %s", exc)
        lost = self.pipeline.drop(revoked)
        gone = set(revoked)
        self._backlog = deque(r for r in self._backlog if TopicPartition(r.topic, r.partition) not in gone)
        if lost:
            logger.info("partitions %s revoked: %d unsettled clips handed back", sorted(revoked), len(lost))

    def _drain(self, consumer: KafkaConsumer) -> None:
        """SIGTERM: take nothing new, let running clips finish for a while, commit what is settled."""
        deadline = time.monotonic() + DRAIN_S
        logger.info("draining: %d clips running, %d unsettled", len(self._running), self.pipeline.unsettled)
        while self._running and time.monotonic() < deadline:
            consumer.poll(timeout_ms=0)
            self._reap(0.2)
            self._apply()
        self._commit(force=True)
        left = self.pipeline.unsettled
        if left:
            logger.info("drained: %d unsettled clips handed back (not committed)", left)

    # --- the rest -------------------------------------------------------------------------------------

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
        self, value: bytes | None, key: bytes | None, error: str, clip: ClipMessage | None = None
    ) -> None:
        headers = [("error", error[:1000].encode()), ("worker", self.worker_id.encode())]
        payload = (
            value
            if value is not None
            else (clip.model_dump_json(exclude={"frames"}).encode() if clip else b"")
        )
        assert self._producer is not None
        self._producer.send(self.topics.dead_letter, key=key, value=payload, headers=headers)
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

    def _heartbeat(self) -> None:
        if not self.beats.due():
            return
        now = time.monotonic()
        since = self.gate.since
        beat = InferHeartbeat(
            worker_id=self.worker_id,
            at=time.time(),
            processed=self.processed,
            in_flight=self.pipeline.unsettled,
            running=sum(len(s) for s in self._running.values()),
            outage_since=None if since is None else round(time.time() - (now - since), 3),
            outage_error=self.gate.error[:300],
        )
        self.beats.write(self.redis, beat)

    def _model_id(self) -> str:
        backend = self._active_backend or self._backend
        return backend.model_id if backend is not None else self.settings.model.model

    def _task_hash(self, clip: ClipMessage) -> str:
        return _prompt_hash(clip.task, round(clip.t_end - clip.t_start, 3), tuple(clip.event_types))


@functools.lru_cache(maxsize=256)
def _prompt_hash(task: Task, duration_s: float, event_types: tuple[str, ...]) -> str:
    """Clips of one job share task, length and event types: render their prompt once, not per clip."""
    from vstream.analysis.tasks import render

    return render(task, duration_s=duration_s, event_types=list(event_types)).prompt_hash
