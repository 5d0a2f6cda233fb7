"""The CLI's promise for the model backend: a backend that cannot work is one line and exit 2; `vstream
analyze` exits non-zero when a clip got no answer at all, and 0 when every clip got one (parseable or not)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.media_fixtures import sample
from tests.vstream.model.fake_openai_server import FakeOpenAIServer
from vstream.cli import main
from vstream.config import ModelSettings
from vstream.model.base import ModelBackend

ARGS = ["--fps", "1", "--clip-seconds", "2", "--overlap", "0"]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample(tmp_path_factory.mktemp("cli-backend"), seconds=4, width=160, height=96)


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("vstream")]
    assert len(err) == 1, err
    return err[0]


def scripted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, outputs: dict[str, object]) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"outputs": outputs}))
    monkeypatch.setenv("VSTREAM_MODEL__TYPE", "scripted")
    monkeypatch.setenv("VSTREAM_MODEL__MODEL", str(script))


def test_endpoint_down_at_start_up_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, video: Path
) -> None:
    monkeypatch.setenv("VSTREAM_MODEL__MODEL", "glm-4.5v")
    url = f"http://127.0.0.1:{free_port()}/v1"
    assert main(["analyze", str(video), *ARGS, "--model", f"openai:{url}"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("vstream: error: ") and "unreachable" in line and url in line
    assert "Traceback" not in line


def test_a_model_the_server_does_not_serve_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    video: Path,
    fake_server: FakeOpenAIServer,
) -> None:
    monkeypatch.setenv("VSTREAM_MODEL__MODEL", "no-such-model")
    assert main(["analyze", str(video), *ARGS, "--model", f"openai:{fake_server.base_url}"]) == 2
    line = one_error_line(capsys)
    assert "does not serve model 'no-such-model'" in line and "glm-4.5v" in line


def test_a_missing_local_model_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, video: Path
) -> None:
    missing = tmp_path / "no-checkpoint"
    assert main(["analyze", str(video), *ARGS, "--model", str(missing)]) == 2
    assert "does not exist" in one_error_line(capsys)


def test_clips_without_any_answer_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, video: Path
) -> None:
    scripted(monkeypatch, tmp_path, {"events": "[]"})  # nothing scripted for the caption task
    assert main(["analyze", str(video), *ARGS, "--task", "caption"]) == 1
    line = one_error_line(capsys)
    assert line.startswith("vstream: error: 2 of 2 clips got no answer from the model")
    assert "no output for task 'caption'" in line


def test_unparseable_answers_are_answers_and_exit_0(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, video: Path
) -> None:
    scripted(monkeypatch, tmp_path, {"events": "random words, no JSON"})
    assert main(["analyze", str(video), *ARGS, "--events", "person falls", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    clips = [r for r in records if r["type"] == "clip"]
    assert len(clips) == 2 and all(r["ok"] is False and r["raw"] for r in clips)


def test_a_server_that_goes_down_mid_run_leaves_clips_unanswered(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, video: Path
) -> None:
    server = FakeOpenAIServer().start()
    monkeypatch.setenv("VSTREAM_MODEL__MODEL", server.model)
    monkeypatch.setenv("VSTREAM_MODEL__FRAMES", "images")  # no probe: the first request is a clip
    monkeypatch.setenv("VSTREAM_MODEL__MAX_RETRIES", "0")
    import vstream.model.factory as factory

    real = factory.make_backend

    def make_then_stop(settings: ModelSettings) -> ModelBackend:
        backend = real(settings)  # checked while the server is up
        server.stop()
        return backend

    monkeypatch.setattr(factory, "make_backend", make_then_stop)
    assert main(["analyze", str(video), *ARGS, "--model", f"openai:{server.base_url}"]) == 1
    line = one_error_line(capsys)
    assert "clips got no answer" in line and "unavailable" in line
