"""The OpenAI backend against a real `transformers serve` (5.24, from the main venv) serving the tiny
random-weight checkpoint: a strict server that answers 422 to any field outside OpenAI's schema and cannot
decode a video URL without torchcodec. Answers are noise; what is checked is that requests go through."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from vstream.config import ModelSettings
from vstream.model.base import ClipInput, TaskSpec
from vstream.model.factory import make_backend
from vstream.model.openai_backend import OpenAIBackend
from vstream.model.tiny import make_tiny_checkpoint

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 240  # ~40 s on an idle machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base_url, model id) of a private `transformers serve`, stopped after the module."""
    ckpt = str(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-serve")))
    port = free_port()
    cli = Path(sys.executable).with_name("transformers")
    log = (tmp_path_factory.mktemp("serve-log") / "serve.log").open("w")
    args = [str(cli), "serve", ckpt, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    proc = subprocess.Popen(
        [*args, "--dtype", "float32"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}; log: {log.name}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not up after {START_TIMEOUT_S} s; log: {log.name}")
            time.sleep(1)
        yield base_url, ckpt
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_auto_picks_images_and_no_422_remains(served: tuple[str, str]) -> None:
    base_url, model = served
    frames = np.random.default_rng(0).integers(0, 255, (4, 112, 112, 3), dtype=np.uint8)
    clip = ClipInput("c", frames, (0.0, 0.5, 1.0, 1.5), 2.0)
    settings = ModelSettings(type="openai", model=model, base_url=base_url, frames="auto", max_retries=1)
    backend = make_backend(settings)
    try:
        assert isinstance(backend, OpenAIBackend)
        assert backend.transport.name == "images"  # it cannot decode a data: video URL
        gens = [
            backend.generate([clip], TaskSpec("caption", "Describe.", "h", thinking=t, max_new_tokens=4))[0]
            for t in (False, True)
        ]
        assert [g.error for g in gens] == [None, None] and all(g.new_tokens > 0 for g in gens)
        # what it refused was learnt once from its 422; the thinking switch is a field it takes
        assert backend.dropped_fields == {"skip_special_tokens"}
        (text,) = backend.generate_text(["Summarise: a car stops."], max_new_tokens=4)
        assert text.error is None
    finally:
        backend.close()
