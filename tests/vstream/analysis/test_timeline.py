from vstream.analysis.records import EventChange, Observation
from vstream.analysis.results import ParsedOutput, Segment
from vstream.analysis.timeline import EventTracker, SegmentStitcher, TrackerConfig, TrackerState, observations
from vstream.schema import ClipMessage, ClipParams, clip_id_for

PARAMS = ClipParams(fps=2, clip_seconds=8, overlap_seconds=2)


def clip(index: int, *, last: bool = False, wall0: float | None = None) -> ClipMessage:
    t0 = index * 6.0
    ts = [t0 + k / 2 for k in range(16)]
    return ClipMessage(
        stream_id="cam",
        clip_id=clip_id_for("cam", PARAMS, index),
        index=index,
        params=PARAMS,
        t_start=t0,
        t_end=t0 + 8,
        timestamps=ts,
        clock="pts",
        width=448,
        height=252,
        frames=[b"x"] * 16,
        last=last,
        wall_timestamps=[wall0 + t for t in ts] if wall0 is not None else None,
    )


def obs(label: str, start: float, end: float, conf: float = 0.7) -> Observation:
    return Observation(label=label, start=start, end=end, confidence=conf)


def run(
    tracker: EventTracker, state: TrackerState, index: int, *o: Observation, last: bool = False
) -> list[EventChange]:
    return tracker.apply(state, clip(index, last=last), list(o), "m", "p")


def test_same_event_in_overlapping_clips_is_one_event_with_a_lifecycle() -> None:
    tracker, state = EventTracker(), TrackerState()
    opened = run(tracker, state, 0, obs("fall", 6.5, 7.5))
    updated = run(tracker, state, 1, obs("fall", 6.5, 9.0, conf=0.9))
    assert [c.kind for c in opened] == ["open"] and [c.kind for c in updated] == ["update"]
    event = updated[0].event
    assert event.event_id == opened[0].event.event_id
    assert (event.start, event.end, event.confidence, event.version) == (6.5, 9.0, 0.9, 2)
    assert event.clip_ids == [clip(0).clip_id, clip(1).clip_id]
    closed = run(tracker, state, 2)  # clip 2 ends at 20 s > 9 + 4 without seeing it
    assert [c.kind for c in closed] == ["close"] and closed[0].event.state == "closed"
    assert state.open_events == {}


def test_identical_redetection_is_not_an_update_but_is_kept_as_evidence() -> None:
    tracker, state = EventTracker(), TrackerState()
    run(tracker, state, 0, obs("fall", 6.5, 7.5))
    assert run(tracker, state, 1, obs("fall", 6.5, 7.5)) == []
    (event,) = state.open_events.values()
    assert event.clip_ids == [clip(0).clip_id, clip(1).clip_id] and event.version == 1


def test_a_short_gap_is_bridged_a_long_one_starts_a_new_event() -> None:
    tracker, state = EventTracker(TrackerConfig(join_gap_s=2.0, close_after_s=30)), TrackerState()
    a = run(tracker, state, 0, obs("car stops", 1.0, 2.0))[0].event
    bridged = run(tracker, state, 1, obs("car stops", 6.0, 7.0), obs("car stops", 3.5, 4.5))
    assert {c.event.event_id for c in bridged} == {a.event_id}, "1.5 s gap, then 1.5 s again: one event"
    later = run(tracker, state, 2, obs("car stops", 17.0, 18.0))
    assert later[0].kind == "open" and later[0].event.event_id != a.event_id, "10 s gap: a new event"


def test_hysteresis_keeps_a_flickering_event_open() -> None:
    tracker, state = EventTracker(), TrackerState()  # defaults: join 8 s, close after 10 s unseen
    first = run(tracker, state, 0, obs("person", 1, 5))[0].event
    assert run(tracker, state, 1) == [], "clip 1 (6-14 s) misses it: 14 < 5 + 10, still open"
    again = run(tracker, state, 2, obs("person", 12.5, 14))
    assert [c.kind for c in again] == ["update"] and again[0].event.event_id == first.event_id
    assert run(tracker, state, 3)[0].kind == "close", "clip 3 ends at 26 > 14 + 10"


def test_different_labels_are_different_events() -> None:
    tracker, state = EventTracker(), TrackerState()
    changes = run(tracker, state, 0, obs("fall", 1, 2), obs("run", 1, 2))
    assert sorted(c.event.label for c in changes) == ["fall", "run"]
    assert len({c.event.event_id for c in changes}) == 2


def test_last_clip_closes_everything_and_ids_are_deterministic() -> None:
    ids = []
    for _ in range(2):
        tracker, state = EventTracker(), TrackerState()
        changes = run(tracker, state, 0, obs("fall", 1, 2), last=True) + tracker.close_all(state)
        ids.append(changes[0].event.event_id)
        assert [c.kind for c in changes] == ["open", "close"]
    assert ids[0] == ids[1]


def test_observations_map_clip_time_to_stream_and_wall_time() -> None:
    from vstream.analysis.results import Detection

    c = clip(3, wall0=1_700_000_000.0)
    parsed = ParsedOutput(
        task="events",
        ok=True,
        raw="",
        detections=[Detection(label="fall", start_s=2.0, end_s=3.5, confidence=0.8)],
    )
    (o,) = observations(parsed, c)
    assert (o.start, o.end) == (20.0, 21.5)
    assert o.wall_start == 1_700_000_020.0 and o.wall_end == 1_700_000_021.5


def test_segments_are_stitched_without_overlap_or_gaps() -> None:
    stitcher, state = SegmentStitcher(), TrackerState()

    def seg(index: int, *spans: tuple[float, float, str]) -> list[tuple[float, float, str]]:
        parsed = ParsedOutput(
            task="segments",
            ok=True,
            raw="",
            segments=[Segment(start_s=a, end_s=b, title=t) for a, b, t in spans],
        )
        return [(r.start, r.end, r.title) for r in stitcher.apply(state, clip(index), parsed)]

    assert seg(0, (0, 5, "intro"), (5, 8, "slides")) == [(0, 5, "intro"), (5, 8, "slides")]
    # clip 1 covers 6..14; its first segment repeats "slides" from 6: extends it, no new record
    assert seg(1, (0, 4, "slides"), (4, 8, "demo")) == [(5, 10, "slides"), (10, 14, "demo")]
    # clip 2 covers 12..20: a segment inside the already-covered overlap is dropped, the next starts at 14
    assert seg(2, (0, 1.5, "demo"), (1.5, 8, "questions")) == [(14, 20, "questions")]
