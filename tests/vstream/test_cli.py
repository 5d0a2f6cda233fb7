"""The ``vstream`` command line: how flags become a request, and how bad input is reported (one line, 2)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from vstream import cli
from vstream.cli import build_parser, check_scheme, main, request_from_args
from vstream.config import Settings
from vstream.media.frames import SourceError
from vstream.presets import SPORT_EVENTS
from vstream.schema import IngestRequest


def request(*argv: str) -> IngestRequest:
    return request_from_args(build_parser().parse_args(list(argv)), Settings())


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err.splitlines()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--fps", "--fps: Input should be greater than 0"),
        ("--clip-seconds", "--clip-seconds: Input should be greater than 0"),
        ("--max-side", "--max-side: Input should be greater than or equal to 28"),
    ],
)
@pytest.mark.parametrize("command", ["clips", "ingest", "analyze"])
def test_zero_is_refused_not_taken_as_the_default(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str, flag: str, message: str
) -> None:
    rc, err = run_main(capsys, command, str(tmp_path / "s.mp4"), flag, "0")
    assert rc == 2
    assert err == [f"vstream: {message}"]


def test_explicit_values_override_the_preset() -> None:
    req = request(
        "clips", "s.mp4", "--preset", "surveillance", "--fps", "3", "--clip-seconds", "4", "--max-side", "224"
    )
    assert (req.params.fps, req.params.clip_seconds, req.params.max_side) == (3, 4, 224)


def test_events_imply_the_events_task() -> None:
    req = build_parser().parse_args(["analyze", "s.mp4", "--events", "person falls, car stops,"])
    r = request_from_args(req, Settings())
    assert r.task == "events"
    assert r.event_types == ["person falls", "car stops"]


def test_without_events_or_task_the_task_is_caption() -> None:
    r = request_from_args(build_parser().parse_args(["analyze", "s.mp4"]), Settings())
    assert r.task == "caption" and r.event_types == []


@pytest.mark.parametrize(
    ("extra", "task"), [(["--task", "caption"], "caption"), (["--preset", "lecture"], "segments")]
)
def test_events_with_a_task_that_takes_none_is_an_error(
    capsys: pytest.CaptureFixture[str], extra: list[str], task: str
) -> None:
    rc, err = run_main(capsys, "analyze", "s.mp4", "--events", "person falls", *extra)
    assert rc == 2
    assert err == [f"vstream: --events needs task 'events'; task {task!r} takes no event types"]


def test_events_replace_the_preset_labels() -> None:
    r = request_from_args(
        build_parser().parse_args(["analyze", "s.mp4", "--preset", "surveillance", "--events", "door opens"]),
        Settings(),
    )
    assert r.task == "events" and r.event_types == ["door opens"] and r.preset == "surveillance"


@pytest.mark.parametrize("extra", [[], ["--preset", "lecture"]])
def test_sport_without_the_sports_preset_is_an_error(
    capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    rc, err = run_main(capsys, "analyze", "s.mp4", "--sport", "tennis", *extra)
    assert rc == 2
    assert err == ["vstream: --sport tennis needs --preset sports"]


def test_sport_picks_the_highlight_table_of_the_sports_preset() -> None:
    r = request("clips", "s.mp4", "--preset", "sports", "--sport", "basketball")
    assert r.sport == "basketball" and r.event_types == list(SPORT_EVENTS["basketball"])
    assert request("clips", "s.mp4", "--preset", "sports").sport == "soccer"


def test_validation_messages_carry_no_pydantic_internals(capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run_main(capsys, "analyze", "s.mp4", "--task", "events")
    assert rc == 2
    assert err == ["vstream: task 'events' needs at least one event type"]


def test_cross_field_messages_have_no_location(capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run_main(capsys, "clips", "s.mp4", "--clip-seconds", "2", "--overlap", "3")
    assert rc == 2
    assert err == ["vstream: overlap_seconds must be smaller than clip_seconds"]


def test_unsupported_scheme_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = run_main(capsys, "clips", "ftp://x/y")
    assert rc == 2
    assert len(err) == 1
    assert err[0].startswith("vstream: error: unsupported source scheme 'ftp' (supported: rtsp, ")
    assert "srt" in err[0]


@pytest.mark.parametrize("source", ["rtsp://cam/1", "HTTPS://h/x.m3u8", "var/s.mp4", "/abs/s.mp4", "a:b.mp4"])
def test_supported_sources_pass_the_scheme_check(source: str) -> None:
    check_scheme(source)


def test_file_urls_are_refused_with_a_hint() -> None:
    with pytest.raises(SourceError, match=r"unsupported source scheme 'file'.*local file path"):
        check_scheme("file:///tmp/s.mp4")


@pytest.mark.parametrize("command", [["ingest", "s.mp4"], ["serve"], ["worker", "webhooks"]])
def test_unreachable_redis_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    import uvicorn

    port = closed_port()
    monkeypatch.setenv("VSTREAM_REDIS__URL", f"redis://user:secret@127.0.0.1:{port}/0")
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("uvicorn started"))
    rc, err = run_main(capsys, *command)
    assert rc == 2
    assert len(err) == 1
    assert err[0].startswith(f"vstream: error: cannot reach Redis at redis://127.0.0.1:{port}/0 ")
    assert "deploy/local/services.sh start" in err[0] and "secret" not in err[0]


class _NoBrokers:
    """What kafka-python 3's clients do with no broker: log every retry, then time out."""

    def __init__(self, **config: object) -> None:
        from kafka.errors import KafkaTimeoutError

        logging.getLogger("kafka.net.manager").error("retry noise a user should not see")
        raise KafkaTimeoutError(f"Unable to bootstrap from {config['bootstrap_servers']}")


@pytest.mark.parametrize("command", [["ingest", "s.mp4"], ["serve"]])
def test_unreachable_kafka_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    import kafka
    import uvicorn

    monkeypatch.setenv("VSTREAM_KAFKA__BOOTSTRAP", "kafka.example:9092")
    monkeypatch.setattr(cli, "_check_redis", lambda url: None)
    monkeypatch.setattr(kafka, "KafkaAdminClient", _NoBrokers)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("uvicorn started"))
    rc, err = run_main(capsys, *command)
    assert rc == 2
    assert err == [
        "vstream: error: cannot reach Kafka at kafka.example:9092 (KafkaTimeoutError); "
        "set VSTREAM_KAFKA__BOOTSTRAP or start the local ones with deploy/local/services.sh start"
    ]
    assert not [r for r in caplog.records if r.name.startswith("kafka")]
    # the check's ERROR retries were silenced; afterwards only kafka-python's INFO chatter stays off
    assert logging.getLogger("kafka").level == logging.WARNING
    logging.getLogger("kafka").setLevel(logging.NOTSET)


def test_malformed_kafka_address_names_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VSTREAM_KAFKA__BOOTSTRAP", "kafka:notaport")
    monkeypatch.setattr(cli, "_check_redis", lambda url: None)
    rc, err = run_main(capsys, "serve")
    assert rc == 2
    assert len(err) == 1 and "'kafka:notaport' (VSTREAM_KAFKA__BOOTSTRAP)" in err[0]


def test_bad_settings_give_one_line_naming_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VSTREAM_LOG_LEVEL", "LOUD")
    rc, err = run_main(capsys, "clips", "s.mp4")
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("vstream: VSTREAM_LOG_LEVEL: Input should be 'DEBUG'")


def test_log_level_setting_sets_the_level(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}
    monkeypatch.setenv("VSTREAM_LOG_LEVEL", "warning")
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: seen.update(kw))
    monkeypatch.setitem(cli.COMMANDS, "clips", lambda args, settings: 0)
    assert main(["clips", "s.mp4"]) == 0
    assert seen["level"] == "WARNING"
    assert main(["-v", "clips", "s.mp4"]) == 0
    assert seen.get("level") == logging.DEBUG  # a new lookup: mypy narrowed seen["level"] above
