"""bench/scale.py: its arithmetic, and a CPU-cheap run of the whole benchmark on the single broker."""

from __future__ import annotations

import pytest
from kafka.partitioner.default import DefaultPartitioner

from bench import scale


def test_rows_compare_each_run_with_n_times_the_single_worker_rate() -> None:
    runs = [
        scale.Run("infer", 1, 10, 5.0),  # 2 clips/s
        scale.Run("infer", 4, 40, 5.5),  # 7.27 clips/s of an ideal 8
        scale.Run("ingest", 2, 20, 10.0),  # no one-worker ingest run: no ratio
    ]
    header, one, four, ingest = scale.scaling_rows(runs)
    assert "vs N x 1" in header
    assert one.split()[-1] == "1.00"
    assert four.split()[-2:] == ["7.27", "0.91"]
    assert ingest.split()[-1] == "-"


class _Metadata:
    """The part of the producer's cluster metadata its partitioner reads."""

    def __init__(self, partitions: int) -> None:
        self.parts = set(range(partitions))

    def topics(self) -> set[str]:
        return {"clips"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.parts

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.parts


@pytest.mark.parametrize("partitions", [1, 2, 4, 7])
def test_one_stream_per_partition_as_the_producer_places_them(partitions: int) -> None:
    meta = _Metadata(partitions)
    streams = scale.streams_on_partitions(partitions)
    placed = [DefaultPartitioner().partition("clips", None, s.encode(), None, None, meta) for s in streams]
    assert placed == list(range(partitions))


@pytest.mark.integration
def test_the_benchmark_runs_end_to_end_at_toy_size(services: None) -> None:
    from tests.conftest import KAFKA

    runs = scale.main(
        [
            *("--bootstrap", KAFKA, "--replication", "1", "--partitions", "2"),
            *("--infer", "1,2", "--ingest", "1", "--clips-per-worker", "2", "--latency", "0.05"),
            *("--video-seconds", "7", "--timeout", "300"),
        ]
    )
    assert [(r.kind, r.workers, r.clips) for r in runs] == [
        ("infer", 1, 2),
        ("infer", 2, 4),
        ("ingest", 1, 2),
    ]
    assert all(r.seconds > 0 for r in runs)
    assert runs[1].seconds > 2 * 0.05, "four clips on two workers take at least two latencies"
