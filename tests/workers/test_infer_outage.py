"""A model server outage is not poison: the infer worker (openai backend) against a PRIVATE real vLLM
(deploy/local/vllm.sh on its own port) that is stopped for 60 s mid-run and started again.

The tiny random-weight checkpoint proves plumbing, not answers: what is checked is that every clip gets
exactly one stored result, none is dead-lettered, and the worker resumes by itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import records, start_worker, wait_for
from tests.helpers.ingest import submit
from tests.media_fixtures import sample
from vstream.config import Settings
from vstream.names import Keys
from vstream.schema import ClipParams, IngestRequest

# vLLM starts twice (~45 s idle, minutes on a busy machine) around a 60 s outage
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]
PORT = 8011  # private: this test stops it; the shared server on 8000 is left alone
VLLM_SH = Path(__file__).resolve().parents[2] / "deploy" / "local" / "vllm.sh"
PARAMS = ClipParams(fps=2, clip_seconds=4, overlap_seconds=1)
OUTAGE_S = 60


def vllm(command: str) -> None:
    env = {**os.environ, "VSTREAM_VLLM_PORT": str(PORT)}
    done = subprocess.run(
        [str(VLLM_SH), command], env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, f"vllm.sh {command} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture
def private_vllm(services: None) -> Iterator[str]:
    try:
        vllm("start")  # inside the try: a start that times out may still leave a server behind
        yield f"http://127.0.0.1:{PORT}/v1"
    finally:
        vllm("stop")


def heartbeats(r: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    return [json.loads(r.get(k) or b"{}") for k in r.scan_iter(keys.worker_heartbeat("infer", "*"))]


def test_vllm_stopped_for_a_minute_mid_run_loses_nothing_and_the_worker_resumes(
    settings: Settings, tmp_path: Path, redis_client: redis.Redis, private_vllm: str
) -> None:
    keys = Keys(settings.redis.key_prefix)
    video = sample(tmp_path, "cam.mp4", seconds=60, width=320, height=180)
    n = 20  # 60 s, step 3 s
    log = tmp_path / "infer.log"
    ingest = start_worker(settings, "ingest", tmp_path / "ingest.log")
    model_env = {
        "TYPE": "openai",
        "BASE_URL": private_vllm,
        "MODEL": "glm-4.5v",
        "MAX_NEW_TOKENS": "8",
        "MAX_IN_FLIGHT": "4",
        "MAX_CONCURRENCY": "4",
        "OUTAGE_WINDOW_S": "600",  # far longer than the outage plus vLLM's restart on a busy machine
    }
    infer = start_worker(settings, "infer", log, {f"VSTREAM_MODEL__{k}": v for k, v in model_env.items()})

    def stored() -> int:
        return len(records(redis_client, keys.results("cam")))

    try:
        submit(
            settings,
            IngestRequest(job_id="j", stream_id="cam", source=str(video), params=PARAMS, task="caption"),
        )
        wait_for(lambda: stored() >= 3, 300, "3 results before the outage")
        vllm("stop")
        stopped = time.monotonic()
        before = stored()
        assert before < n, "the outage must land mid-run"
        wait_for(
            lambda: any(b.get("outage_since") for b in heartbeats(redis_client, keys)),
            60,
            "the worker reporting the outage",
        )
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        assert stored() <= before + 4, "nothing is answered while the server is down"
        assert infer.poll() is None, "the worker waits the outage out"
        vllm("start")
        wait_for(lambda: stored() >= n, 600, "every clip's result after the restart")
        time.sleep(2)
    finally:
        for proc in (ingest, infer):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=90)
    text = log.read_text()
    got = records(redis_client, keys.results("cam"))
    assert sorted(r["index"] for r in got) == list(range(n)), "one result per clip, none lost"
    assert text.count("outcome=written") == n, "no clip applied twice"
    assert "outcome=dead-letter" not in text, text[-3000:]
    assert "answers again after" in text
    progress = redis_client.hgetall(keys.analysis_progress("cam", PARAMS.params_hash))
    assert b"dead_lettered" not in progress, progress
    assert not redis_client.keys(keys.clip_attempts("*")), "no attempt left counted against a clip"
    assert infer.returncode == 0
