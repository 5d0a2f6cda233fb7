"""Settings: every knob is a ``VSTREAM_*`` environment variable, validated once at start-up.

Nested groups use ``__`` (``VSTREAM_KAFKA__BOOTSTRAP=host:9092``). Unknown ``VSTREAM_*`` variables are
an error rather than silently ignored, so a typo fails loudly instead of running with a default.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import typing
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

KAFKA_DEFAULT_MESSAGE_LIMIT = 1_048_576


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Group):
    bootstrap: str = Field("127.0.0.1:9092", description="Comma-separated host:port list of Kafka brokers.")
    topic_prefix: str = Field("vstream.", description="Prefix of every topic name (tests use a unique one).")
    clip_partitions: int = Field(
        4, ge=1, description="Partitions of the clips topic; clips are keyed by stream."
    )
    max_message_bytes: int = Field(
        KAFKA_DEFAULT_MESSAGE_LIMIT,
        ge=64 * 1024,
        description="Largest message producer, broker and consumer accept; larger clips use the blob store.",
    )
    request_timeout_ms: int = Field(30_000, ge=1000)
    replication_factor: int = Field(
        1, ge=1, description="Replicas of each topic vstream creates (3 in production; at most the brokers)."
    )
    min_insync_replicas: int = Field(
        1,
        ge=1,
        description="min.insync.replicas of created topics: with acks=all a write needs this many replicas "
        "(2 with replication_factor 3 survives one broker down without losing an acknowledged clip).",
    )

    @model_validator(mode="after")
    def _insync_fits(self) -> KafkaSettings:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) exceeds replication_factor "
                f"({self.replication_factor}): no write could ever succeed"
            )
        return self


class RedisSettings(_Group):
    url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL.")
    key_prefix: str = Field("vstream:", description="Prefix of every key (tests use a unique one).")
    cluster: bool = Field(
        False,
        description="Talk to a Redis Cluster (redis-py's RedisCluster); the URL names any one node.",
    )

    @field_validator("key_prefix")
    @classmethod
    def _no_hash_tag(cls, v: str) -> str:
        # a brace in the prefix would become the hash tag of every key: all keys in one slot
        if "{" in v or "}" in v:
            raise ValueError("must not contain '{' or '}' (Redis Cluster hash tags)")
        return v


class ClipSettings(_Group):
    fps: float = Field(2.0, gt=0, le=30, description="Frames sampled per second of media.")
    clip_seconds: float = Field(8.0, gt=0, le=600, description="Length of one clip window.")
    overlap_seconds: float = Field(2.0, ge=0, description="Overlap between consecutive windows.")
    max_side: int = Field(
        448, ge=28, le=4032, description="Longest frame side after resize (multiple of 28)."
    )
    jpeg_quality: int = Field(85, ge=10, le=100)

    @field_validator("max_side")
    @classmethod
    def _patch_multiple(cls, v: int) -> int:
        # checked here too, so a bad default fails at start-up naming its variable, not at the first clip
        if v % 28:
            raise ValueError("must be a multiple of 28 (GLM-4.5V: patch 14 x merge 2)")
        return v

    @model_validator(mode="after")
    def _check(self) -> ClipSettings:
        if self.overlap_seconds >= self.clip_seconds:
            raise ValueError("overlap_seconds must be smaller than clip_seconds")
        if self.clip_seconds * self.fps < 2:
            raise ValueError("clip_seconds * fps must give at least 2 frames (GLM's temporal patch is 2)")
        return self


class DecodeSettings(_Group):
    backend: Literal["auto", "pyav", "decord"] = Field(
        "auto", description="File decoder: auto = PyAV with B-frame skipping where it keeps the fps."
    )
    stall_timeout_s: float = Field(
        30.0, gt=0, description="Kill a file decoder that yields no frame for this long."
    )
    live_stall_timeout_s: float = Field(
        10.0, gt=0, description="A live connection with no frame for this long is stalled: reconnect."
    )
    live_buffer_frames: int = Field(
        64, ge=2, description="Live frames buffered before the oldest is dropped."
    )
    reconnect_initial_s: float = Field(0.5, gt=0, description="First live reconnect delay (doubles).")
    reconnect_max_s: float = Field(10.0, gt=0, description="Cap of the live reconnect delay.")
    reconnect_attempts: int = Field(
        0,
        ge=0,
        description="Consecutive failed connection attempts before a live source gives up; 0 = no limit.",
    )
    reconnect_give_up_s: float = Field(
        300.0,
        ge=0,
        description="A live source gives up after this long without a frame (rides out a camera reboot); "
        "0 = never.",
    )
    open_timeout_s: float = Field(10.0, gt=0, description="Network open/read timeout for live sources.")


class BlobSettings(_Group):
    root: Path = Field(
        Path("var/blobs"),
        description="Local directory: the claim-check store when url is unset, and the API's rendered reels.",
    )
    url: str | None = Field(
        None,
        description="Claim-check store: file:///dir (one host) or s3://bucket/prefix (many hosts); "
        "unset = the root directory.",
    )
    s3_endpoint: str | None = Field(
        None, description="S3 endpoint URL, e.g. http://127.0.0.1:8333; unset = AWS for s3_region."
    )
    s3_region: str = Field("us-east-1", description="S3 region (signing).")
    s3_access_key_id: SecretStr | None = Field(
        None, description="S3 access key; unset = the S3 client's own credential chain (AWS_* variables)."
    )
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key.")
    s3_path_style: bool = Field(
        False, description="Path-style requests (endpoint/bucket/key) as s3proxy and non-AWS servers use."
    )
    s3_allow_http: bool = Field(False, description="Allow a plain-http endpoint (local/test servers).")
    ttl_s: float = Field(
        7 * 86_400,
        gt=0,
        description="Blobs older than this are swept (clips never settled); keep it >= Kafka's retention.",
    )
    sweep_interval_s: float = Field(
        600.0, gt=0, description="How often a worker that writes blobs sweeps expired ones."
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, v: str | None) -> str | None:
        if v is None:
            return v
        scheme, _, rest = v.partition("://")
        if scheme not in ("file", "s3") or not rest.strip("/"):
            raise ValueError(f"blob store URL must be file:///dir or s3://bucket[/prefix], got {v!r}")
        return v


class ModelSettings(_Group):
    type: Literal["transformers", "openai", "scripted"] = Field(
        "transformers",
        description="Backend: in-process transformers, an OpenAI-compatible server, or scripted answers "
        "(model = path of a JSON script; for tests and demos).",
    )
    model: str = Field(
        "tiny",
        description="Hub id or local directory (transformers), served model name (openai), or 'tiny': a "
        "random-weight checkpoint of GLM-4.5V's architecture built locally (proves plumbing, not answers).",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="auto = bfloat16 on GPU, float32 on CPU."
    )
    device_map: str = Field("auto", description="transformers device_map.")
    max_batch: int = Field(4, ge=1, description="Clips per generate call.")
    max_wait_s: float = Field(0.5, ge=0, description="How long the worker waits to fill a batch.")
    max_new_tokens: int = Field(1024, ge=1)
    max_visual_tokens: int = Field(30_000, ge=64, description="Clips needing more visual tokens are refused.")
    thinking: bool = Field(False, description="GLM thinking mode (slower, sometimes better).")
    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible endpoint (openai).")
    api_key: str = Field("", description="Bearer token for the endpoint, if it needs one.")
    request_timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0)
    max_concurrency: int = Field(4, ge=1, description="Requests in flight to the endpoint.")
    frames: Literal["auto", "video", "video-kwargs", "images"] = Field(
        "auto",
        description="How frames reach an OpenAI-compatible server (openai): video = an MP4 at the clip's "
        "frame rate (vLLM/SGLang as shipped; exact times up to 2 fps), video-kwargs = JPEG frames plus "
        "media_io_kwargs (vLLM with --trust-request-mm-kwargs), images = timed images (any server), "
        "auto = probe once at start-up in that order and log the pick.",
    )
    clip_timeout_s: float = Field(600.0, gt=0, description="Watchdog: a batch running longer is abandoned.")
    max_in_flight: int = Field(
        32,
        ge=1,
        description="Clips one infer worker has taken and not yet settled, across streams and partitions "
        "(openai: one request per clip, also capped by max_concurrency; transformers: max_batch at a time).",
    )
    outage_window_s: float = Field(
        300.0,
        ge=0,
        description="How long an unreachable or overloaded model server (refused, timeouts, 5xx/429) is "
        "waited out without counting attempts toward the dead-letter limit.",
    )


class ApiSettings(_Group):
    admin_key: SecretStr = Field(
        SecretStr(""), description="Key for /v1/keys (key management); empty disables admin endpoints."
    )
    allowed_schemes: list[str] = Field(
        ["rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt"], description="URL schemes a job may read."
    )
    allow_private_networks: bool = Field(
        False, description="Allow sources on loopback/private/link-local addresses (SSRF guard off)."
    )
    file_roots: list[Path] = Field(
        default_factory=list, description="Directories local file sources must lie under; empty = no files."
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="Largest request body accepted.")
    page_limit_max: int = Field(500, ge=1)
    sse_heartbeat_s: float = Field(15.0, gt=0)
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_max_attempts: int = Field(6, ge=1)
    media_token_ttl_s: int = Field(
        900, ge=10, le=86400, description="Lifetime of a console video token (GET /v1/media/{token})."
    )


class AskSettings(_Group):
    chunk_chars: int = Field(
        12_000,
        ge=500,
        description="Questions (POST /v1/streams/{id}/ask, vstream ask): stored notes per prompt; a range "
        "with more is answered chunk by chunk and the answers combined (map-reduce).",
    )
    fan_in: int = Field(6, ge=2, description="Partial answers combined per reduce prompt.")
    max_records: int = Field(
        5000, ge=1, description="Stored records one question reads at most (the earliest ones of the range)."
    )
    max_new_tokens: int = Field(512, ge=16, description="Tokens the model may write per answer.")


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class ConfigError(ValueError):
    """An unknown or invalid ``VSTREAM_*`` variable; the message names the variable."""


class Settings(BaseSettings):
    """All of vstream's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="VSTREAM_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    clips: ClipSettings = ClipSettings()
    decode: DecodeSettings = DecodeSettings()
    blobs: BlobSettings = BlobSettings()
    model: ModelSettings = ModelSettings()
    api: ApiSettings = ApiSettings()
    ask: AskSettings = AskSettings()
    log_level: LogLevel = Field("INFO", description="Python logging level (any case).")
    worker_max_jobs: int = Field(4, ge=1, description="Ingest jobs one ingest worker runs at once.")
    job_lease_s: float = Field(30.0, ge=2, description="A job whose owner stops renewing is taken over.")
    retention_s: int | None = Field(
        7 * 86400, ge=60, description="TTL of stored results, events and feeds; unset (None) keeps them."
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise a clear error on anything unknown or invalid."""
    known = set(Settings.model_fields)
    unknown = sorted(
        k for k in os.environ if k.startswith("VSTREAM_") and k[8:].split("__")[0].lower() not in known
    )
    unknown = [k for k in unknown if k not in _NON_SETTINGS_ENV]
    if unknown:
        raise ConfigError(f"unknown VSTREAM_* environment variables: {', '.join(unknown)}")
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(e) for e in exc.errors())) from exc
    except SettingsError as exc:  # a JSON-typed variable (list, dict) that is not JSON
        raise ConfigError(_describe_unparsable(exc)) from exc


def error_text(e: ErrorDetails) -> str:
    """pydantic's message without its "Value error, " prefix, which means nothing to a user."""
    return "unknown setting" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")


def _describe(e: ErrorDetails) -> str:
    names = [str(p) for p in itertools.takewhile(lambda p: isinstance(p, str), e["loc"])]
    var = "VSTREAM_" + "__".join(n.upper() for n in names)
    annotation = _annotation_at(names)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        var += "__*"  # a check across fields of a group (e.g. overlap vs clip length)
    got = e.get("input")
    shown = f" (got {str(got)[:60]!r})" if isinstance(got, str | int | float) and names else ""
    return f"{var}: {error_text(e)}{shown}"


def _annotation_at(names: list[str]) -> object:
    """The type of the setting at ``names`` (group, then field), or None when there is no such setting."""
    model: object = Settings
    for name in names:
        fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else {}
        if name not in fields:
            return None
        model = fields[name].annotation
    return model


def _describe_unparsable(exc: SettingsError) -> str:
    """pydantic-settings names only the top-level field; find the variable under it that is not JSON."""
    match = re.search(r'field "(\w+)"', str(exc))
    field = match.group(1).upper() if match else ""
    for var, value in sorted(os.environ.items()):
        if var != f"VSTREAM_{field}" and not var.startswith(f"VSTREAM_{field}__"):
            continue
        expected = _json_form(_annotation_at([n.lower() for n in var.removeprefix("VSTREAM_").split("__")]))
        try:
            json.loads(value)
        except ValueError:
            if expected:
                return f"{var} must be {expected} (got {value[:60]!r})"
    return f"VSTREAM_{field}*: {exc}"


def _json_form(annotation: object) -> str | None:
    """How a setting of this type is written, for the types pydantic-settings reads as JSON."""
    origin = typing.get_origin(annotation) or annotation
    if origin is list:
        example = '["/data"]' if typing.get_args(annotation) == (Path,) else '["a", "b"]'
        return f"a JSON list, e.g. {example}"
    if origin is dict or (isinstance(origin, type) and issubclass(origin, BaseModel)):
        return 'a JSON object, e.g. {"name": "value"}'
    return None


# Variables read by scripts, not by the library.
_NON_SETTINGS_ENV = {
    "VSTREAM_CACHE",
    "VSTREAM_KAFKA_PORT",
    "VSTREAM_KAFKA_CONTROLLER_PORT",
    "VSTREAM_KAFKA_CLUSTER_PORTS",
    "VSTREAM_S3_PORT",
    "VSTREAM_S3_BUCKET",
    "VSTREAM_REDIS_PORT",
    "VSTREAM_VLLM_PORT",
    "VSTREAM_REDIS_CLUSTER_PORTS",
}
