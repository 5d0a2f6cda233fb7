"""The decoder interface: what a decoder is given (:class:`DecodeSpec`), what it offers (:class:`Reader`)
and the typed messages a decode child sends its parent (:data:`ChildMessage`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from vstream.media.frames import Frame, SourceInfo
from vstream.schema import redact_url

SkipMode = Literal["auto", "none", "bidir"]


@dataclass(frozen=True)
class DecodeSpec:
    """Everything a decoder needs; picklable, so it can cross into the decode child process."""

    source: str
    fps: float
    max_side: int
    start: float = 0.0
    live: bool = False
    backend: Literal["pyav", "decord"] = "pyav"
    skip: SkipMode = "auto"
    threads: int = 1
    open_timeout_s: float = 10.0

    @property
    def label(self) -> str:
        """The source as it may be logged or stored: without credentials."""
        return redact_url(self.source)


class Reader(Protocol):
    """A decoder: opened by its constructor (raising SourceError), then frames in time order."""

    info: SourceInfo

    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class InfoMessage:
    info: SourceInfo


@dataclass(frozen=True, slots=True)
class FrameMessage:
    frame: Frame


@dataclass(frozen=True, slots=True)
class EndMessage:
    """The source reached its end (not an error, not a stall)."""


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    message: str  # already redacted (SourceError redacts)
    fatal: bool


ChildMessage = InfoMessage | FrameMessage | EndMessage | ErrorMessage
