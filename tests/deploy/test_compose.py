"""deploy/compose/compose.yaml, checked without Docker: the compose-spec schema Docker Compose itself uses,
then what the schema cannot know (settings, dependencies, ports, the wiring between services)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.conftest import REPO, LoadEnv
from vstream.cli import build_parser

COMPOSE = REPO / "deploy/compose/compose.yaml"
# the first use builds helm from source (deploy/local/k8s-check.sh tools, ~3 min): more than the default
pytestmark = pytest.mark.timeout(1800)
VSTREAM_SERVICES = ("api", "ingest", "infer", "webhooks")
_DEFAULT = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def interpolate(value: str) -> str:
    """What Compose substitutes with no variables set on the host: each ${VAR:-default} its default."""
    return _DEFAULT.sub(lambda m: m.group(2) or "", value)


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping"
    return {k: interpolate(str(v)) for k, v in env.items()}


def test_the_file_follows_the_compose_spec(compose: dict[str, Any], k8s_tools: dict[str, Path]) -> None:
    schema = json.loads(k8s_tools["compose_schema"].read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors
    # and the check is real: a misspelt key is an error
    api = {**compose["services"]["api"], "comand": []}
    assert list(validator.iter_errors({**compose, "services": {**compose["services"], "api": api}}))


def test_every_server_and_worker_is_there(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "redis", "s3proxy", *VSTREAM_SERVICES} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["s3proxy"]["image"].startswith("andrewgaul/s3proxy")
    assert not any("minio" in s.get("image", "") or "garage" in s.get("image", "") for s in services.values())


def test_kafka_is_kraft_and_advertises_what_vstream_dials(compose: dict[str, Any]) -> None:
    kafka = {k: str(v) for k, v in compose["services"]["kafka"]["environment"].items()}
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    advertised = kafka["KAFKA_ADVERTISED_LISTENERS"].split("//", 1)[1]
    for name in VSTREAM_SERVICES:
        assert env_of(compose["services"][name])["VSTREAM_KAFKA__BOOTSTRAP"] == advertised


def test_dependencies_exist_and_can_be_waited_for(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for target, cond in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health check: none"
            if cond["condition"] == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is one-shot"
    for name in VSTREAM_SERVICES:
        assert {"kafka", "redis", "s3proxy"} <= set(services[name]["depends_on"])


def test_vstream_variables_are_settings_the_app_accepts(compose: dict[str, Any], load_env: LoadEnv) -> None:
    for name in VSTREAM_SERVICES:
        env = env_of(compose["services"][name])
        assert all(var.startswith("VSTREAM_") for var in env)
        settings = load_env(env)  # raises ConfigError on an unknown name or a bad value
        assert settings.blobs.url is not None and settings.blobs.url.startswith("s3://")


def test_commands_are_real_cli_commands(compose: dict[str, Any]) -> None:
    parser = build_parser()
    kinds = {}
    for name in VSTREAM_SERVICES:
        args = parser.parse_args(compose["services"][name]["command"])
        kinds[name] = (args.command, getattr(args, "kind", None))
    assert kinds == {"api": ("serve", None), "ingest": ("worker", "ingest"), "infer": ("worker", "infer"),
                     "webhooks": ("worker", "webhooks")}


def test_api_port_and_health_check_match_the_server(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    args = build_parser().parse_args(api["command"])
    assert args.host == "0.0.0.0"
    published = [p for p in api["ports"] if str(p).endswith(f":{args.port}")]
    assert published, f"no published port maps to the API's --port {args.port}"
    assert f"127.0.0.1:{args.port}/health/ready" in " ".join(api["healthcheck"]["test"])


def test_blob_store_wiring(compose: dict[str, Any], load_env: LoadEnv) -> None:
    services = compose["services"]
    s = load_env(env_of(services["api"])).blobs
    proxy = {k: interpolate(str(v)) for k, v in services["s3proxy"]["environment"].items()}
    assert s.s3_endpoint == "http://s3proxy:80" and proxy["S3PROXY_ENDPOINT"].endswith(":80")
    assert s.s3_access_key_id is not None and s.s3_secret_access_key is not None
    assert s.s3_access_key_id.get_secret_value() == proxy["S3PROXY_IDENTITY"]
    assert s.s3_secret_access_key.get_secret_value() == proxy["S3PROXY_CREDENTIAL"]
    assert s.url is not None
    bucket = s.url.removeprefix("s3://").split("/", 1)[0]
    # the filesystem backend's bucket is a directory the one-shot service makes
    assert f"{proxy['JCLOUDS_FILESYSTEM_BASEDIR']}/{bucket}" in " ".join(services["s3-bucket"]["entrypoint"])


def test_infer_replicas_fit_the_partitions(compose: dict[str, Any], load_env: LoadEnv) -> None:
    infer = compose["services"]["infer"]
    partitions = load_env(env_of(infer)).kafka.clip_partitions
    assert 1 <= infer["deploy"]["replicas"] <= partitions


def test_build_uses_the_repository_dockerfile(compose: dict[str, Any]) -> None:
    build = compose["services"]["api"]["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == REPO and (context / build["dockerfile"]).is_file()
