"""Wall-clock anchoring of a live stream's media time.

A frame cannot arrive before it was captured, so ``arrival - pts`` over-estimates the wall time of media
time 0 by the frame's delay; the least-delayed frame gives the best estimate. FFmpeg's probing delays the
first frames of every connection by seconds (and HLS delivers whole segments at once), so the estimate is
only trusted once it has stopped improving for ``settle_s`` of arrivals; frames before that are held back
and stamped with the settled value. After that it never jumps: a late frame is just late, an earlier one
lowers it by less than the media time that passed (so wall times stay increasing), and only frames that
stay late for ``late_for_s`` say the media clock no longer matches the wall clock (a stall that PTS did
not cover): then the reader starts a new segment with a new anchor.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AnchorRules:
    settle_s: float = 1.0  # no improvement for this long (arrival time): settled
    max_hold_s: float = 8.0  # settled at the latest this long after the first frame
    tolerance_s: float = 0.03  # improvements smaller than this are jitter, not settling
    late_s: float = 1.5  # a frame this much later than the anchor predicts is late
    late_for_s: float = 3.0  # late for this long: the anchor no longer holds
    lower_fraction: float = 0.5  # after settling, lower by at most this share of elapsed media time


class WallAnchor:
    """Feed ``(arrival, t)`` per decoded frame; ``value`` is the wall time of media time 0."""

    def __init__(self, rules: AnchorRules | None = None) -> None:
        self.rules = rules or AnchorRules()
        self.value: float | None = None
        self.settled = False
        self._first: float | None = None
        self._improved_at = 0.0
        self._late_since: float | None = None
        self._last_t: float | None = None

    def push(self, arrival: float, t: float) -> bool:
        """Returns False when frames have stayed late too long: this anchor no longer fits the stream."""
        r, candidate = self.rules, arrival - t
        if self._first is None:
            self._first = self._improved_at = arrival
        if self.value is None:
            self.value = candidate
        elif not self.settled:
            if candidate < self.value - r.tolerance_s:
                self._improved_at = arrival
            self.value = min(self.value, candidate)
        elif candidate < self.value:
            step = max(0.0, t - (self._last_t if self._last_t is not None else t))
            self.value = max(candidate, self.value - r.lower_fraction * step)
        self._last_t = t
        if not self.settled:
            if arrival - self._improved_at >= r.settle_s or arrival - self._first >= r.max_hold_s:
                self.settled = True
            return True
        if candidate - self.value > r.late_s:
            self._late_since = self._late_since if self._late_since is not None else arrival
            return arrival - self._late_since < r.late_for_s
        self._late_since = None
        return True

    def settle(self) -> None:
        """Stop holding (end of stream or segment): the best estimate so far is the anchor."""
        self.settled = True
