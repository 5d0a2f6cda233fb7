import pytest
from pydantic import ValidationError

from vstream.config import load_settings


def test_nested_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSTREAM_KAFKA__BOOTSTRAP", "k1:9092,k2:9092")
    monkeypatch.setenv("VSTREAM_CLIPS__FPS", "1.5")
    s = load_settings()
    assert s.kafka.bootstrap == "k1:9092,k2:9092" and s.clips.fps == 1.5


def test_unknown_variables_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSTREAM_KAFAK__BOOTSTRAP", "typo:9092")
    with pytest.raises(ValueError, match="VSTREAM_KAFAK__BOOTSTRAP"):
        load_settings()


def test_invalid_values_fail_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSTREAM_CLIPS__OVERLAP_SECONDS", "9")
    with pytest.raises(ValidationError, match="overlap_seconds must be smaller"):
        load_settings()


def test_unknown_nested_field_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSTREAM_KAFKA__BOOTSTARP", "x")
    with pytest.raises(ValidationError):
        load_settings()
