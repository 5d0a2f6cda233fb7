import pytest

from vstream.config import ConfigError, load_settings


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
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value) == "VSTREAM_CLIPS__*: overlap_seconds must be smaller than clip_seconds"


def test_unknown_nested_field_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSTREAM_KAFKA__BOOTSTARP", "x")
    with pytest.raises(ConfigError, match=r"^VSTREAM_KAFKA__BOOTSTARP: unknown setting"):
        load_settings()


@pytest.mark.parametrize(("value", "level"), [("debug", "DEBUG"), ("Warning", "WARNING"), ("ERROR", "ERROR")])
def test_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch, value: str, level: str) -> None:
    monkeypatch.setenv("VSTREAM_LOG_LEVEL", value)
    assert load_settings().log_level == level


def test_unknown_log_level_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSTREAM_LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value) == (
        "VSTREAM_LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL' (got 'LOUD')"
    )


def test_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSTREAM_CLIPS__FPS", "fast")
    monkeypatch.setenv("VSTREAM_MODEL__MAX_BATCH", "0")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value) == (
        "VSTREAM_CLIPS__FPS: Input should be a valid number, unable to parse string as a number "
        "(got 'fast'); "
        "VSTREAM_MODEL__MAX_BATCH: Input should be greater than or equal to 1 (got '0')"
    )


def test_max_side_not_a_patch_multiple_fails_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSTREAM_CLIPS__MAX_SIDE", "500")
    with pytest.raises(
        ConfigError, match=r"^VSTREAM_CLIPS__MAX_SIDE: must be a multiple of 28 .*\(got '500'\)$"
    ):
        load_settings()


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("VSTREAM_API__FILE_ROOTS", "/tmp", 'VSTREAM_API__FILE_ROOTS must be a JSON list, e.g. ["/data"]'),
        ("VSTREAM_API__ALLOWED_SCHEMES", "rtsp", "VSTREAM_API__ALLOWED_SCHEMES must be a JSON list, e.g. ["),
        ("VSTREAM_API", "roots=/tmp", "VSTREAM_API must be a JSON object"),
    ],
)
def test_json_variables_that_are_not_json_say_the_form(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(
        "VSTREAM_API__MAX_BODY_BYTES", "2048"
    )  # a plain variable of the same group: not blamed
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value).startswith(expected)
    assert str(err.value).endswith(f"(got {value!r})")


def test_json_list_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSTREAM_API__FILE_ROOTS", '["/data", "/media"]')
    assert [str(p) for p in load_settings().api.file_roots] == ["/data", "/media"]
