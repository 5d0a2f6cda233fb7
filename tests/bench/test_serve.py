"""The serving benchmark's harness at tiny size: direct load and a real ``vstream worker infer`` against
a fake OpenAI-compatible server whose answers take a fixed time, so throughput grows with concurrency."""

from __future__ import annotations

import re

import pytest

from bench import serve
from tests.vstream.model.fake_openai_server import FakeOpenAIServer, Reply

pytestmark = pytest.mark.integration


def test_serve_bench_runs_direct_sweep_and_the_worker(
    services: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeOpenAIServer() as server:
        server.respond_with(lambda body: Reply.slow(0.2, "A scripted caption."))
        args = serve.parse_args(
            [
                "--base-url",
                server.base_url,
                "--model",
                server.model,
                "--frames",
                "images",
                "--clips",
                "12",
                "--streams",
                "3",
                "--side",
                "56",
                "--frames-per-clip",
                "2",
                "--max-new-tokens",
                "4",
                "--concurrency",
                "1,4",
            ]
        )
        ratio = serve.run(args)
        worker_peak = server.max_in_flight
    out = capsys.readouterr().out
    rates = {int(n): float(v) for n, v in re.findall(r"direct,\s+(\d+) in flight:\s+([\d.]+) clips/s", out)}
    assert set(rates) == {1, 4}, out
    assert rates[4] > 2 * rates[1], "four in flight must beat one against a server that is not saturated"
    assert "worker,    4 in flight" in out, out
    assert worker_peak == 4, "the worker keeps max_in_flight requests at the server"
    assert 0.3 < ratio < 1.5, out
