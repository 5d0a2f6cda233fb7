"""``vstream.ask``: answers parsed from JSON or prose, citations checked against stored spans, the map-reduce
path and the thinking switch (a recording backend stands in for the model), and ``vstream ask`` on the
command line against the real Redis."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis

from tests.helpers.stored_results import caption, segment, store
from vstream.ask import Kind, StoredSpan, answer_question, chunk, parse_answer, validate
from vstream.cli import main
from vstream.config import AskSettings, Settings
from vstream.model.base import Generation
from vstream.names import Keys


def span(ref: str, start: float, end: float, kind: Kind = "caption") -> StoredSpan:
    return StoredSpan(kind=kind, ref=ref, start=start, end=end, text=f"caption: {ref}")


class Recording:
    """Answers every prompt with ``text`` and records how it was asked."""

    model_id = "recording"

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts, self.calls = list(texts), []  # type: ignore[var-annotated]

    def generate_text(
        self, prompts: Sequence[str], *, max_new_tokens: int = 1024, thinking: bool = False
    ) -> list[Generation]:
        self.calls.append((list(prompts), thinking))
        text = self.texts.pop(0) if len(self.texts) > 1 else self.texts[0]
        return [Generation(text=text) for _ in prompts]

    def generate(self, clips: object, task: object) -> list[Generation]:
        raise AssertionError("ask never sends clips")

    def close(self) -> None:
        pass


def test_answers_in_json_with_think_blocks_or_in_prose_are_read() -> None:
    a = parse_answer(
        '<think>let me see</think>```json\n{"found": true, "answer": "At 24 s.", "citations": '
        '[[24, 32], {"start": 40, "end": 48}, "50-58", "junk"]}\n```'
    )
    assert a is not None and (a.found, a.answer, a.cited) == (
        True,
        "At 24 s.",
        [(24, 32), (40, 48), (50, 58)],
    )
    prose = parse_answer("A van stops at the gate [24-32s] and again [ 40 – 48 s ].")
    assert prose is not None and prose.cited == [(24.0, 32.0), (40.0, 48.0)]
    assert parse_answer("<think>only thoughts</think>") is None


def test_validate_keeps_matches_repairs_overlaps_and_drops_inventions() -> None:
    spans = [span("a", 0, 8), span("b", 6, 14), span("s", 0, 30, "segment")]
    cited, dropped = validate([(0.2, 7.9), (7, 13), (100, 110), (6, 14)], spans)
    assert [(c.ref, c.repaired) for c in cited] == [("a", False), ("b", False)]
    assert dropped == 1
    cited, _ = validate([(20, 40)], spans)  # overlaps only the segment
    assert [(c.ref, c.repaired) for c in cited] == [("s", True)]


def test_chunks_respect_the_budget_and_keep_order() -> None:
    spans = [span(f"c{i:02d}", i, i + 1) for i in range(30)]
    chunks = chunk(spans, 100)
    assert len(chunks) > 5 and [s.ref for c in chunks for s in c] == [s.ref for s in spans]
    assert all(sum(len(f"[{s.start:g}-{s.end:g}s] {s.text}") + 1 for s in c) <= 100 for c in chunks)


@pytest.mark.integration
def test_map_reduce_and_thinking_reach_the_model(settings: Settings, redis_client: redis.Redis) -> None:
    keys = Keys(settings.redis.key_prefix)
    store(
        redis_client,
        keys,
        "cam-1",
        captions=[caption("cam-1", f"c{i}", 8.0 * i, 8.0 * i + 8, "x" * 200) for i in range(12)],
    )
    backend = Recording([json.dumps({"found": True, "answer": "part", "citations": [[8, 16]]})])
    a = answer_question(
        redis_client,
        keys,
        "cam-1",
        "q?",
        lambda: backend,
        AskSettings(chunk_chars=500, fan_in=3),
        thinking=True,
    )
    map_prompts = backend.calls[0][0]
    assert a.chunks == len(map_prompts) == 6  # two 200-character captions per 500-character chunk
    assert [len(p) for p, _ in backend.calls] == [6, 2, 1]  # map, then reduce 3 at a time until one is left
    assert all(thinking for _, thinking in backend.calls)
    assert "Question: q?" in map_prompts[0] and "[0-8s] caption: " in map_prompts[0]
    assert [(c.ref, c.start) for c in a.citations] == [("c1", 8.0)]


@pytest.mark.integration
def test_a_reduce_without_citations_keeps_those_of_the_answers_it_combined(
    settings: Settings, redis_client: redis.Redis
) -> None:
    keys = Keys(settings.redis.key_prefix)
    store(
        redis_client,
        keys,
        "cam-2",
        captions=[caption("cam-2", f"c{i}", 8.0 * i, 8.0 * i + 8, "y" * 300) for i in range(2)],
    )
    parts = json.dumps({"found": True, "answer": "seen", "citations": [[0, 8]]})
    combined = json.dumps({"found": True, "answer": "seen twice", "citations": []})
    backend = Recording([parts, combined])
    a = answer_question(redis_client, keys, "cam-2", "q", lambda: backend, AskSettings(chunk_chars=500))
    assert a.answer == "seen twice" and [c.ref for c in a.citations] == ["c0"]


@pytest.mark.integration
def test_vstream_ask_on_the_command_line(
    settings: Settings,
    redis_client: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys = Keys(settings.redis.key_prefix)
    store(
        redis_client, keys, "talk", segments=[segment("talk", "s0", 0, 60, "Entropy", "entropy is defined")]
    )
    script = tmp_path / "s.json"
    script.write_text(
        json.dumps(
            {
                "outputs": {
                    "text": json.dumps(
                        {"found": True, "answer": "In the first minute.", "citations": [[0, 60]]}
                    )
                }
            }
        )
    )
    monkeypatch.setenv("VSTREAM_REDIS__URL", settings.redis.url)
    monkeypatch.setenv("VSTREAM_REDIS__KEY_PREFIX", settings.redis.key_prefix)
    assert main(["ask", "talk", "when is entropy defined?", "--model", f"scripted:{script}", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] == "In the first minute." and [c["ref"] for c in out["citations"]] == ["s0"]
    assert main(["ask", "talk", "q", "--start", "100", "--end", "200", "--model", f"scripted:{script}"]) == 0
    assert capsys.readouterr().out.startswith("No captions, segments or events are stored for stream 'talk'")
    assert main(["ask", "talk", "q", "--start", "9", "--end", "1"]) == 2
    assert "--start (9) is after --end (1)" in capsys.readouterr().err
