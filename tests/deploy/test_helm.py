"""The Helm chart, rendered by the real helm: settings, GPUs, vLLM, KEDA, probes, schema, bad values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from api.routes.health import router as health_router
from tests.deploy import values_schema
from tests.deploy.conftest import CHART, FULL_VALUES, LoadEnv, Render, find, helm, one
from vstream.names import Topics

FULL = ("-f", str(FULL_VALUES))
# the first use builds helm from source (deploy/local/k8s-check.sh tools, ~3 min): more than the default
pytestmark = pytest.mark.timeout(1800)


def env_of(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Every variable the pods get: the ConfigMap's data and the chart's Secret's stringData."""
    config = one(docs, "ConfigMap", "vs-vstream-config")["data"] or {}
    secret = one(docs, "Secret", "vs-vstream-secrets").get("stringData") or {}
    assert not set(config) & set(secret), "a variable set twice"
    return {**config, **secret}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return cast(dict[str, Any], containers[0])


def gpus(deployment: dict[str, Any]) -> int:
    return int(container(deployment).get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


@pytest.mark.parametrize("args", [(), FULL], ids=["default", "full"])
def test_every_rendered_variable_is_a_setting_the_app_accepts(render: Render, load_env: LoadEnv,
                                                             args: tuple[str, ...]) -> None:
    env = env_of(render(*args))
    assert env and all(name.startswith("VSTREAM_") for name in env)
    settings = load_env(env)  # raises ConfigError on an unknown name or a bad value
    assert settings.kafka.bootstrap == env["VSTREAM_KAFKA__BOOTSTRAP"]
    assert settings.kafka.clip_partitions == int(env["VSTREAM_KAFKA__CLIP_PARTITIONS"])


def test_full_values_reach_the_app_typed(render: Render, load_env: LoadEnv) -> None:
    s = load_env(env_of(render(*FULL)))
    assert (s.kafka.topic_prefix, s.kafka.replication_factor, s.kafka.min_insync_replicas) == ("prod.", 3, 2)
    assert s.redis.cluster is True and s.redis.url.startswith("redis://:s3cret@")
    assert s.blobs.url == "s3://vstream-clips/prod" and s.blobs.s3_path_style is True
    assert s.blobs.s3_secret_access_key is not None
    assert s.api.file_roots == [Path("/media")] and s.api.allowed_schemes == ["rtsp", "rtsps", "https"]
    assert s.api.admin_key.get_secret_value() == "change-me-admin-key"
    assert s.model.max_in_flight == 64 and s.model.frames == "video-kwargs"
    assert s.retention_s == 1209600 and s.log_level == "DEBUG"


def test_credentials_are_in_the_secret_not_the_configmap(render: Render) -> None:
    docs = render(*FULL)
    config = one(docs, "ConfigMap", "vs-vstream-config")["data"]
    secret = one(docs, "Secret", "vs-vstream-secrets")["stringData"]
    for name in ("VSTREAM_API__ADMIN_KEY", "VSTREAM_BLOBS__S3_SECRET_ACCESS_KEY", "VSTREAM_REDIS__URL"):
        assert name in secret and name not in config
    # the config file's password-less redis.url gave way to the secret one
    assert "s3cret" in secret["VSTREAM_REDIS__URL"]


def test_every_pod_reads_config_and_secret(render: Render) -> None:
    for name in ("api", "ingest", "infer", "webhooks"):
        refs = container(one(render(), "Deployment", f"vs-vstream-{name}"))["envFrom"]
        assert {"configMapRef": {"name": "vs-vstream-config"}} in refs
        assert {"secretRef": {"name": "vs-vstream-secrets"}} in refs


def test_in_process_infer_workers_request_gpus(render: Render) -> None:
    docs = render()
    infer = one(docs, "Deployment", "vs-vstream-infer")
    assert gpus(infer) == 4
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
        infer["spec"]["template"]["spec"]["tolerations"]
    )
    assert container(infer)["args"] == ["worker", "infer"]
    assert not find(docs, "Deployment", "vs-vstream-vllm")
    assert all(gpus(one(docs, "Deployment", f"vs-vstream-{n}")) == 0 for n in ("api", "ingest", "webhooks"))


def test_gpu_count_and_node_selector_come_from_values(render: Render) -> None:
    infer = one(render("--set", "infer.gpus=2", "--set", "infer.nodeSelector.pool=h200"),
                "Deployment", "vs-vstream-infer")
    assert gpus(infer) == 2
    assert infer["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "h200"}


def test_vllm_serves_the_infer_workers(render: Render) -> None:
    docs = render(*FULL)
    vllm = one(docs, "Deployment", "vs-vstream-vllm")
    args = container(vllm)["args"]
    assert args[0] == "zai-org/GLM-4.5V-FP8"
    assert {"--tensor-parallel-size=8", "--enable-expert-parallel", "--reasoning-parser=glm45"} <= set(args)
    assert gpus(vllm) == 8 and gpus(one(docs, "Deployment", "vs-vstream-infer")) == 0
    service = one(docs, "Service", "vs-vstream-vllm")
    port = service["spec"]["ports"][0]["port"]
    assert service["spec"]["selector"] == vllm["spec"]["selector"]["matchLabels"]
    env = env_of(docs)
    assert env["VSTREAM_MODEL__TYPE"] == "openai"
    assert env["VSTREAM_MODEL__BASE_URL"] == f"http://vs-vstream-vllm:{port}/v1"
    assert env["VSTREAM_MODEL__MODEL"] == "glm-4.5v"
    assert f"--served-model-name={env['VSTREAM_MODEL__MODEL']}" in args


def test_scaled_object_follows_the_infer_group_lag(render: Render) -> None:
    docs = render(*FULL)
    scaled = one(docs, "ScaledObject", "vs-vstream-infer")["spec"]
    topics = Topics(prefix="prod.")
    trigger = scaled["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == topics.infer_group
    assert trigger["metadata"]["topic"] == topics.clips
    assert trigger["metadata"]["bootstrapServers"] == env_of(docs)["VSTREAM_KAFKA__BOOTSTRAP"]
    assert scaled["scaleTargetRef"]["name"] == "vs-vstream-infer"
    assert scaled["maxReplicaCount"] <= int(env_of(docs)["VSTREAM_KAFKA__CLIP_PARTITIONS"])
    # KEDA owns the replica count: a fixed one in the Deployment would fight it on every upgrade
    assert "replicas" not in one(docs, "Deployment", "vs-vstream-infer")["spec"]


def test_scaled_object_defaults_to_the_partition_count(render: Render) -> None:
    docs = render("--set", "keda.enabled=true", "--set", "config.kafka.clip_partitions=6")
    assert one(docs, "ScaledObject", "vs-vstream-infer")["spec"]["maxReplicaCount"] == 6
    trigger = one(docs, "ScaledObject", "vs-vstream-infer")["spec"]["triggers"][0]["metadata"]
    assert trigger["consumerGroup"] == Topics().infer_group


def test_more_workers_than_partitions_is_refused(k8s_tools: dict[str, Path]) -> None:
    proc = helm(k8s_tools, "template", "vs", str(CHART), "--set", "keda.enabled=true",
                "--set", "keda.maxReplicaCount=20", "--set", "config.kafka.clip_partitions=8")
    assert proc.returncode != 0
    assert "keda.maxReplicaCount 20 exceeds config.kafka.clip_partitions 8" in proc.stderr


def test_api_probes_are_the_apps_health_routes(render: Render) -> None:
    docs = render()
    api = container(one(docs, "Deployment", "vs-vstream-api"))
    routes = {getattr(r, "path", None) for r in health_router.routes}
    assert api["livenessProbe"]["httpGet"]["path"] == "/health/live" in routes
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready" in routes
    port = api["ports"][0]
    assert api["args"][api["args"].index("--port") + 1] == str(port["containerPort"])
    service = one(docs, "Service", "vs-vstream-api")["spec"]
    assert service["ports"][0]["targetPort"] == port["name"] == api["livenessProbe"]["httpGet"]["port"]


@pytest.mark.parametrize("args", [(), FULL], ids=["default", "full"])
def test_services_and_budgets_select_pods_that_exist(render: Render, args: tuple[str, ...]) -> None:
    docs = render(*args)
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in find(docs, "Deployment")]
    selectors = [d["spec"]["selector"] for d in find(docs, "Service")]
    selectors += [d["spec"]["selector"]["matchLabels"] for d in find(docs, "PodDisruptionBudget")]
    assert len(selectors) >= 4
    for sel in selectors:
        # one component's pods each: a budget or Service over every vstream pod would be a bug
        assert sum(sel.items() <= labels.items() for labels in pod_labels) == 1, sel


def test_budgets_only_where_a_pod_can_go(render: Render) -> None:
    names = {d["metadata"]["name"] for d in find(render(), "PodDisruptionBudget")}
    assert names == {"vs-vstream-api", "vs-vstream-ingest", "vs-vstream-infer"}  # one webhook pod: none
    names = {d["metadata"]["name"] for d in find(render(*FULL), "PodDisruptionBudget")}
    assert {"vs-vstream-webhooks", "vs-vstream-vllm"} <= names


def test_values_schema_lists_every_setting() -> None:
    current = json.loads(values_schema.SCHEMA_PATH.read_text())
    assert values_schema.SCHEMA_PATH.read_text() == values_schema.render(current), (
        "values.schema.json is out of date with vstream/config.py: run python -m tests.deploy.values_schema"
    )


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("config.kafka.bootsrap=kafka:9092", "bootsrap"),  # a misspelt setting
        ("config.kafak.bootstrap=kafka:9092", "kafak"),  # a misspelt group
        ("config.kafka.clip_partitions=0", "clip_partitions"),
        ("config.model.type=gpt", "type"),
        ("api.replicas=-1", "replicas"),
        ("vllm.gpus=0", "gpus"),
        ("api.service.type=Ingress", "type"),
    ],
)
def test_bad_values_fail_lint(k8s_tools: dict[str, Path], value: str, complaint: str) -> None:
    proc = helm(k8s_tools, "lint", str(CHART), "--set", value)
    assert proc.returncode != 0, proc.stdout
    assert complaint in proc.stdout + proc.stderr


def test_good_values_pass_lint(k8s_tools: dict[str, Path]) -> None:
    for args in [(), FULL]:
        proc = helm(k8s_tools, "lint", "--strict", str(CHART), *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
