"""The infer worker's in-flight bookkeeping and outage gate (pure logic, no servers)."""

from __future__ import annotations

import pytest
from kafka.structs import TopicPartition

from workers.infer_pipeline import OutageGate, Pipeline, State

P0, P1 = TopicPartition("clips", 0), TopicPartition("clips", 1)


def test_commit_watermark_stops_at_the_oldest_unsettled_clip() -> None:
    p: Pipeline[str, str] = Pipeline(10)
    a, b, c = (p.add(P0, off, "s", f"c{off}") for off in (5, 6, 7))
    p.settle(b)
    p.settle(c)
    assert p.to_commit() == {P0: 5}, "clip 5 is unsettled: nothing past it may be committed"
    p.settle(a)
    assert p.to_commit() == {P0: 8}
    p.committed({P0: 8})
    assert p.to_commit() == {}, "only partitions that moved are committed again"
    assert p.unsettled == 0 and p.free() == 10


def test_partitions_have_independent_watermarks() -> None:
    p: Pipeline[str, str] = Pipeline(10)
    slow = p.add(P0, 0, "a", "a0")
    p.settle(p.add(P1, 0, "b", "b0"))
    assert p.to_commit() == {P0: 0, P1: 1}
    p.settle(slow)
    assert p.to_commit([P0]) == {P0: 1}


def test_results_apply_in_clip_order_per_stream_but_streams_do_not_wait_for_each_other() -> None:
    p: Pipeline[str, str] = Pipeline(10)
    a0, b0, a1 = p.add(P0, 0, "a", "a0"), p.add(P0, 1, "b", "b0"), p.add(P0, 2, "a", "a1")
    for s in (a0, b0, a1):
        p.start(s, 0.0)
    p.finish(a1, "r")
    p.finish(b0, "r")
    assert p.appliable() == [b0], "a1 waits for a0; b0 belongs to another stream"
    p.settle(b0)
    p.finish(a0, "r")
    assert p.appliable() == [a0]
    p.settle(a0)
    assert p.appliable() == [a1]


def test_in_flight_limit_counts_every_unsettled_clip() -> None:
    p: Pipeline[str, str] = Pipeline(2)
    first = p.add(P0, 0, "s", "x")
    p.add(P0, 1, "s", "y")
    assert p.free() == 0
    p.settle(first)
    p.settle(first)  # settling twice changes nothing
    assert p.free() == 1


def test_a_retry_waits_for_its_backoff() -> None:
    p: Pipeline[str, str] = Pipeline(4)
    s = p.add(P0, 0, "s", "x")
    p.start(s, 1.0)
    p.again(s, not_before=5.0)
    assert p.ready(4.9) == [] and p.ready(5.0) == [s]
    assert s.state is State.READY


def test_revoked_partitions_are_forgotten_and_their_clips_marked_dropped() -> None:
    p: Pipeline[str, str] = Pipeline(4)
    keep, lost = p.add(P1, 0, "b", "b0"), p.add(P0, 0, "a", "a0")
    p.start(lost, 0.0)
    assert p.drop([P0]) == [lost] and lost.dropped
    assert p.to_commit() == {P1: 0} and p.unsettled == 1
    p.settle(lost)  # its inference returned after the revoke: nothing changes
    assert p.unsettled == 1 and list(p.slots()) == [keep]


def test_offsets_must_increase_within_a_partition() -> None:
    p: Pipeline[str, str] = Pipeline(4)
    p.add(P0, 3, "s", "x")
    with pytest.raises(ValueError, match="not after"):
        p.add(P0, 3, "s", "x")


def test_outage_gate_probes_one_clip_at_a_time_with_capped_backoff() -> None:
    g = OutageGate(base_s=1.0, cap_s=4.0)
    assert g.allowed(0.0) is None
    g.failed(10.0, started_at=9.0, error="refused")
    g.failed(10.1, started_at=9.5, error="refused")  # already running when it went down: no escalation
    assert g.delay == 1.0 and g.allowed(10.5) == 0
    assert g.allowed(11.0) == 1
    g.probe_started()
    assert g.allowed(11.0) == 0, "one probe at a time"
    delays = []
    for k in range(4):
        g.failed(20.0 + k, started_at=20.0 + k, error="refused")
        delays.append(g.delay)
        g.probe_started()
    assert delays == [2.0, 4.0, 4.0, 4.0]
    assert g.longer_than(20.0, 5.0) and not g.longer_than(14.0, 5.0)
    assert g.answered(30.0) == pytest.approx(20.0)
    assert not g.active and g.allowed(30.0) is None


def test_outage_gate_respects_retry_after_up_to_its_cap() -> None:
    g = OutageGate(base_s=1.0, cap_s=30.0)
    g.failed(0.0, started_at=0.0, error="HTTP 503", retry_after=12.0)
    assert g.allowed(11.9) == 0 and g.allowed(12.0) == 1
    g.probe_started()
    g.failed(12.0, started_at=12.0, error="HTTP 429", retry_after=3600.0)
    assert g.next_try == pytest.approx(42.0)


def test_clips_waiting_only_for_their_predecessor_do_not_block_new_ones_up_to_a_bound() -> None:
    p: Pipeline[str, str] = Pipeline(2)
    slow = p.add(P0, 0, "s", "x")
    waiting = [p.add(P0, k, "s", "x") for k in (1, 2)]
    assert p.free() == 0
    for s in waiting:
        p.start(s, 0.0)
        p.finish(s, "r")
    assert p.appliable() == [] and p.free() == 1, "two finished clips wait for clip 0; one more may run"
    p.add(P0, 3, "s", "x")
    assert p.free() == 0, "no more than 2 x max_in_flight unsettled"
    p.settle(slow)
    assert p.appliable() == [waiting[0]]
