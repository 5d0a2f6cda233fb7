"""Cluster-wide counters: every worker adds to one Redis hash; the API's ``/metrics`` exports them (with
Kafka consumer lag) in Prometheus format, so one scrape sees the whole deployment."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ValidationError

from vstream.names import Keys

logger = logging.getLogger(__name__)

HELP = {
    "clips_produced": "Clips published to Kafka by ingest workers",
    "clips_gated": "Clips skipped by the motion gate",
    "live_frames_dropped": "Live frames dropped because downstream was slower than the source",
    "live_gaps": "Gaps in live sources (reconnects, stalls, size changes) that cut a clip window short",
    "clips_claim_checked": "Clips sent through the claim-check blob store",
    "ingest_jobs": "Ingest job runs by outcome",
    "clips_analysed": "Clips analysed by infer workers, by outcome",
    "parse_failures": "Model answers that could not be parsed (stored with their raw text)",
    "model_seconds": "Seconds of model time spent on clips",
    "dead_letter": "Clips sent to the dead-letter topic",
    "model_outages": "Times an infer worker found the model server down or overloaded",
    "model_outage_seconds": "Seconds infer workers waited for the model server to come back",
}


class InferHeartbeat(BaseModel):
    """What an infer worker writes to its heartbeat key (60 s TTL) every few seconds."""

    schema_version: int = 1
    worker_id: str
    at: float  # wall clock of the beat
    processed: int = 0
    in_flight: int = 0  # clips taken and not settled
    running: int = 0  # clips whose inference is under way
    outage_since: float | None = None  # wall clock the model server became unreachable; None = it answers
    outage_error: str = ""


def infer_heartbeats(raw: Iterable[bytes | str | None]) -> list[InferHeartbeat]:
    """Parse heartbeat values; unreadable ones (an older worker's format) are skipped."""
    beats: list[InferHeartbeat] = []
    for value in raw:
        if value is None:
            continue
        try:
            beats.append(InferHeartbeat.model_validate_json(value))
        except ValidationError:
            continue
    return beats


class Counters:
    """Workers' side: ``add("clips_gated", 3, stream="cam-1")``. Best effort: metrics never fail work."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r, self.key = client, keys.metrics

    def add(self, name: str, amount: float = 1.0, **labels: str) -> None:
        if not _known(name, amount):
            return
        try:
            self.r.hincrbyfloat(self.key, _field(name, labels), amount)
        except redis.RedisError as exc:
            logger.debug("metric %s not recorded: %s", name, exc)

    def add_to(self, pipe: redis.client.Pipeline, name: str, amount: float = 1.0, **labels: str) -> None:
        """Queue the increment on a caller's pipeline: per-clip counters ride along with the clip's other
        writes instead of costing a round trip each."""
        if _known(name, amount):
            pipe.hincrbyfloat(self.key, _field(name, labels), amount)


def _known(name: str, amount: float) -> bool:
    """An unknown name is a bug (raise); a zero amount is nothing to write."""
    if name not in HELP:
        raise ValueError(f"unknown metric {name!r}")
    return bool(amount)


def _field(name: str, labels: dict[str, str]) -> str:
    return name + "|" + ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _parse(field: str) -> tuple[str, dict[str, str]]:
    name, _, rest = field.partition("|")
    labels = dict(pair.split("=", 1) for pair in rest.split(",") if "=" in pair)
    return name, labels


class RedisCollector(Collector):
    """API side: turns the hash into Prometheus counters, plus a consumer-lag gauge from ``lag()``."""

    def __init__(
        self, client: redis.Redis, keys: Keys, lag: Callable[[], dict[tuple[str, str], int]]
    ) -> None:
        self.r, self.key, self.lag = client, keys.metrics, lag
        self.heartbeats = keys.worker_heartbeat("infer", "*")

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        series: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        raw: dict[bytes, bytes] = self.r.hgetall(self.key)  # type: ignore[assignment]
        for raw_field, raw_value in raw.items():
            name, labels = _parse(raw_field.decode())
            if name in HELP:
                series[name].append((labels, float(raw_value)))
        for name, points in sorted(series.items()):
            label_names = sorted({k for labels, _ in points for k in labels})
            family = CounterMetricFamily(f"vstream_{name}", HELP[name], labels=label_names)
            for labels, value in points:
                family.add_metric([labels.get(k, "") for k in label_names], value)
            yield family
        gauge = GaugeMetricFamily(
            "vstream_consumer_lag", "Messages not yet consumed", labels=["group", "topic"]
        )
        for (group, topic), value in sorted(self.lag().items()):
            gauge.add_metric([group, topic], value)
        yield gauge
        yield from self._infer_workers()

    def _infer_workers(self) -> Iterator[GaugeMetricFamily]:
        """Live infer workers, their clips in flight, and which of them wait out a model-server outage."""
        keys = list(self.r.scan_iter(match=self.heartbeats, count=1000))
        # one GET per worker (few of them): MGET across hash slots fails on a Redis Cluster
        beats = infer_heartbeats(self.r.get(k) for k in keys)
        now = time.time()
        yield GaugeMetricFamily("vstream_infer_workers", "Infer workers with a live heartbeat", len(beats))
        yield GaugeMetricFamily(
            "vstream_infer_in_flight", "Clips taken and not yet settled", sum(b.in_flight for b in beats)
        )
        outage = GaugeMetricFamily(
            "vstream_model_outage_seconds",
            "How long each infer worker has found the model server unavailable (0 = it answers)",
            labels=["worker"],
        )
        for b in beats:
            since = b.outage_since
            outage.add_metric([b.worker_id], 0.0 if since is None else max(0.0, now - since))
        yield outage


class CachedLag:
    """Consumer lag per (group, topic), refreshed at most every ``ttl_s`` (scrapes are frequent)."""

    def __init__(self, bootstrap: str, groups: dict[str, str], ttl_s: float = 10.0) -> None:
        self.bootstrap, self.groups, self.ttl_s = bootstrap, groups, ttl_s
        self._at, self._value = 0.0, {}  # type: ignore[var-annotated]

    def __call__(self) -> dict[tuple[str, str], int]:
        if time.monotonic() - self._at > self.ttl_s:
            try:
                self._value = self._measure()
            except Exception as exc:  # Kafka down: report no lag rather than failing the whole scrape
                logger.warning("consumer lag unavailable: %s", exc)
                self._value = {}
            self._at = time.monotonic()
        return dict(self._value)

    def _measure(self) -> dict[tuple[str, str], int]:
        from kafka import KafkaAdminClient, KafkaConsumer

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap.split(","), request_timeout_ms=5000)
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap.split(","), request_timeout_ms=5000)
        try:
            out: dict[tuple[str, str], int] = {}
            for group, topic in self.groups.items():
                committed = {
                    tp: om.offset for tp, om in _committed(admin, group).items() if tp.topic == topic
                }
                ends = consumer.end_offsets(list(committed)) if committed else {}
                out[(group, topic)] = sum(max(0, ends[tp] - off) for tp, off in committed.items())
            return out
        finally:
            admin.close()
            consumer.close()


def _committed(admin: Any, group: str) -> dict[Any, Any]:
    """A group's committed offsets; kafka-python 3 renamed the call and keyed the answer by group."""
    if hasattr(admin, "list_group_offsets"):
        return dict(admin.list_group_offsets(group).get(group, {}))
    return dict(admin.list_consumer_group_offsets(group))
