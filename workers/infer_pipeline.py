"""The infer worker's bookkeeping, as pure logic: which taken clips are in flight, in what order their
results may be applied, how far each partition's offset may be committed, and when a model-server outage
lets the next clip through.

Kafka offsets are committed per partition only up to the oldest unsettled clip, so a crash re-delivers
every clip whose result is not durably stored (and some that are: those are skipped as duplicates).
Results are applied in clip order per stream: a stream's clips are all in one partition, in order, so
"every earlier clip of this stream in this partition is settled" is the condition.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from kafka.structs import TopicPartition

C = TypeVar("C")  # what the worker keeps per clip (a decoded clip message)
A = TypeVar("A")  # what inference gave back (an Analysis)


class State(enum.Enum):
    READY = "ready"  # taken, waiting to run (or to run again)
    RUNNING = "running"
    DONE = "done"  # inference finished; waiting for earlier clips of its stream before it is applied
    SETTLED = "settled"  # applied, skipped or dead-lettered: its offset may be committed


@dataclass(eq=False)
class Slot(Generic[C, A]):
    """One taken Kafka record, from poll until settled."""

    tp: TopicPartition
    offset: int
    stream: str
    clip: C
    state: State = State.READY
    analysis: A | None = None
    not_before: float = 0.0  # monotonic time before which a retry must not start
    ready_since: float = 0.0
    started_at: float = 0.0
    dropped: bool = False  # its partition was revoked: whatever inference returns is thrown away
    attempts: int = 0  # runs counted in Redis, as of the last count (spares a read per finished clip)


@dataclass
class Pipeline(Generic[C, A]):
    """Clips taken and not yet settled, at most ``max_in_flight`` of them."""

    max_in_flight: int
    _slots: dict[TopicPartition, dict[int, Slot[C, A]]] = field(default_factory=dict)
    _frontier: dict[TopicPartition, int] = field(default_factory=dict)  # first offset not yet settled
    _committed: dict[TopicPartition, int] = field(default_factory=dict)
    _unsettled: int = 0

    @property
    def unsettled(self) -> int:
        return self._unsettled

    def free(self) -> int:
        """How many more clips may be taken: ``max_in_flight`` counts clips not yet finished, so clips
        that only wait for an earlier clip of their stream do not starve the server (those are bounded
        by a second ``max_in_flight``)."""
        waiting = sum(1 for s in self.slots() if s.state is State.DONE)
        unfinished = self._unsettled - waiting
        return max(0, min(self.max_in_flight - unfinished, 2 * self.max_in_flight - self._unsettled))

    def add(self, tp: TopicPartition, offset: int, stream: str, clip: C, now: float = 0.0) -> Slot[C, A]:
        slots = self._slots.setdefault(tp, {})
        if slots and offset <= max(slots):
            raise ValueError(f"offset {offset} of {tp} is not after the ones already taken")
        slot: Slot[C, A] = Slot(tp, offset, stream, clip, ready_since=now)
        slots[offset] = slot
        self._frontier.setdefault(tp, offset)
        self._unsettled += 1
        return slot

    def slots(self) -> Iterator[Slot[C, A]]:
        for slots in self._slots.values():
            yield from slots.values()

    def in_state(self, state: State) -> list[Slot[C, A]]:
        return [s for s in self.slots() if s.state is state]

    def ready(self, now: float) -> list[Slot[C, A]]:
        """Clips that may start now, oldest first within each partition."""
        return [s for s in self.slots() if s.state is State.READY and s.not_before <= now]

    def start(self, slot: Slot[C, A], now: float) -> None:
        slot.state, slot.started_at = State.RUNNING, now

    def finish(self, slot: Slot[C, A], analysis: A) -> None:
        slot.state, slot.analysis = State.DONE, analysis

    def again(self, slot: Slot[C, A], not_before: float, now: float = 0.0) -> None:
        """Back to the queue: run again no earlier than ``not_before``."""
        slot.state, slot.analysis = State.READY, None
        slot.not_before, slot.ready_since = not_before, now

    def appliable(self) -> list[Slot[C, A]]:
        """Finished clips whose every earlier clip of the same stream (same partition) is settled."""
        out: list[Slot[C, A]] = []
        for slots in self._slots.values():
            blocked: set[str] = set()
            for slot in slots.values():
                if slot.state is State.SETTLED or slot.stream in blocked:
                    continue
                blocked.add(slot.stream)
                if slot.state is State.DONE:
                    out.append(slot)
        return out

    def settle(self, slot: Slot[C, A]) -> None:
        if slot.state is State.SETTLED or slot.dropped:
            return
        slot.state = State.SETTLED
        self._unsettled -= 1
        slots = self._slots.get(slot.tp)
        if slots is None or slots.get(slot.offset) is not slot:
            return  # its partition was dropped meanwhile
        while slots:
            first = next(iter(slots))
            if slots[first].state is not State.SETTLED:
                break
            del slots[first]
            self._frontier[slot.tp] = first + 1

    def to_commit(self, tps: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Per partition, the next offset to consume, where it moved since the last :meth:`committed`."""
        chosen = (
            self._frontier if tps is None else {tp: self._frontier[tp] for tp in tps if tp in self._frontier}
        )
        return {tp: off for tp, off in chosen.items() if self._committed.get(tp) != off}

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def drop(self, tps: Iterable[TopicPartition]) -> list[Slot[C, A]]:
        """Forget revoked partitions; returns their unsettled slots (marked dropped)."""
        lost: list[Slot[C, A]] = []
        for tp in tps:
            for slot in self._slots.pop(tp, {}).values():
                if slot.state is not State.SETTLED:
                    slot.dropped = True
                    self._unsettled -= 1
                    lost.append(slot)
            self._frontier.pop(tp, None)
            self._committed.pop(tp, None)
        return lost


@dataclass
class OutageGate:
    """While the model server is down: no clip runs until the backoff has passed, then exactly one (the
    probe); its failure doubles the backoff (capped), any answer from the server ends the outage."""

    base_s: float = 1.0
    cap_s: float = 30.0
    since: float | None = None  # monotonic start of the outage
    error: str = ""
    next_try: float = 0.0
    delay: float = 0.0
    probing: bool = False

    @property
    def active(self) -> bool:
        return self.since is not None

    def failed(self, now: float, started_at: float, error: str, retry_after: float | None = None) -> None:
        """A clip started at ``started_at`` found the server unavailable."""
        if self.since is None:
            self.since, self.delay = now, self.base_s
        elif started_at < self.since or not self.probing:
            return  # one of the clips already running when the server went: it says nothing new
        else:
            self.delay = min(self.cap_s, self.delay * 2)
        self.error, self.probing = error, False
        wait = self.delay * random.uniform(0.8, 1.0)  # jitter: workers of one fleet do not probe in step
        if retry_after is not None:
            wait = min(max(wait, retry_after), self.cap_s)
        self.next_try = now + wait

    def allowed(self, now: float) -> int | None:
        """How many clips may start now: None = no limit (no outage)."""
        if self.since is None:
            return None
        return 1 if not self.probing and now >= self.next_try else 0

    def probe_started(self) -> None:
        self.probing = True

    def answered(self, now: float) -> float | None:
        """The server answered: the outage (if any) is over; returns how long it lasted."""
        if self.since is None:
            return None
        lasted = now - self.since
        self.since, self.probing, self.error = None, False, ""
        return lasted

    def longer_than(self, now: float, window_s: float) -> bool:
        return self.since is not None and now - self.since > window_s
