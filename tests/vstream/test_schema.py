import pytest

from vstream.schema import (
    ClipMessage,
    ClipParams,
    IngestRequest,
    SchemaError,
    clip_id_for,
    decode_clip,
    encode_clip,
    redact_url,
)

PARAMS = ClipParams()


def clip(**kw: object) -> ClipMessage:
    base: dict[str, object] = dict(
        stream_id="cam-1",
        clip_id=clip_id_for("cam-1", PARAMS, 3),
        index=3,
        params=PARAMS,
        t_start=18.0,
        t_end=26.0,
        timestamps=[18.0, 18.5],
        clock="pts",
        width=448,
        height=252,
        frames=[b"\xff\xd8a", b"\xff\xd8bc"],
    )
    base.update(kw)
    return ClipMessage.model_validate(base)


def test_envelope_round_trip_keeps_frames_byte_exact() -> None:
    msg = clip()
    assert decode_clip(encode_clip(msg)) == msg


@pytest.mark.parametrize("data", [b"", b"VSC1", b"XXXX\x00\x00\x00\x02{}", b"VSC1\x00\x00\x00\x10{}"])
def test_malformed_envelopes_raise_schema_error(data: bytes) -> None:
    with pytest.raises(SchemaError):
        decode_clip(data)


def test_envelope_with_wrong_frame_sizes_is_rejected() -> None:
    data = encode_clip(clip())
    with pytest.raises(SchemaError, match="frame sizes"):
        decode_clip(data[:-1])


@pytest.mark.parametrize("timestamps", [[], [1.0], [1.0, 1.5, 2.0]])
def test_clip_needs_even_frame_count(timestamps: list[float]) -> None:
    with pytest.raises(ValueError, match="even number"):
        clip(timestamps=timestamps, frames=[b"x"] * len(timestamps))


def test_clip_ids_are_deterministic_and_depend_on_parameters() -> None:
    assert clip_id_for("s", ClipParams(), 1) == clip_id_for("s", ClipParams(), 1)
    assert clip_id_for("s", ClipParams(), 1) != clip_id_for("s", ClipParams(fps=1), 1)
    assert clip_id_for("s", ClipParams(), 1) != clip_id_for("s", ClipParams(), 2)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"overlap_seconds": 8.0}, "overlap"),
        ({"max_side": 450}, "multiple of 28"),
        ({"fps": 0.1, "clip_seconds": 8}, "at least 2 frames"),
    ],
)
def test_bad_clip_parameters_say_what_is_wrong(kw: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClipParams.model_validate(kw)


def test_stream_ids_are_restricted() -> None:
    with pytest.raises(ValueError):
        IngestRequest(job_id="j", stream_id="../etc", source="x.mp4")


def test_redact_url_drops_credentials() -> None:
    assert redact_url("rtsp://admin:secret@10.0.0.5:554/live") == "rtsp://10.0.0.5:554/live"
    assert redact_url("/data/a.mp4") == "/data/a.mp4"
