"""Table-driven tests for the tolerant GLM-4.5V output parser.

Every row states what a correct parse must produce; the shared assertions (no exception, raw kept,
ok flag, item count, wire round-trip) run for all rows, and each row adds its own specific check.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError

from vstream.analysis import jsonrepair
from vstream.analysis import parse as parse_mod
from vstream.analysis.parse import parse_output
from vstream.analysis.results import Box, Caption, Detection, ParsedOutput, Segment

W, H, DUR = 448, 252, 30.0
LABELS = ("fall", "fight", "person falling")
ONE = '{"label": "fall", "start": 3.5, "end": 6, "confidence": 0.92, "description": "man slips on ice"}'
TWO = '[{"label": "fall", "start": 1, "end": 2}, {"label": "fight", "start": 5, "end": 9}]'
MARK = "<|begin_of_box|>{}<|end_of_box|>"


@dataclass(frozen=True)
class Case:
    raw: str
    ok: bool
    n: int
    task: str = "events"
    check: Callable[[ParsedOutput], Any] | None = None
    error: str | None = None  # substring the error must contain
    warning: str | None = None  # substring at least one warning must contain
    kwargs: dict[str, Any] = field(default_factory=dict)


def _det(out: ParsedOutput, i: int = 0) -> Detection:
    return out.detections[i]


def _box(out: ParsedOutput, i: int = 0, det: int = 0) -> tuple[float, float, float, float]:
    b = out.detections[det].boxes[i]
    return (b.x1, b.y1, b.x2, b.y2)


def _approx(*vals: float) -> Any:
    return pytest.approx(vals, abs=1e-6)


def _garbage(seed: int, size: int) -> str:
    rng = random.Random(seed)
    # Whole BMP minus surrogates: real decoder output never contains lone surrogates.
    return "".join(chr(rng.choice((rng.randint(0x20, 0x7E), rng.randint(0xA0, 0xD7FF)))) for _ in range(size))


SCALED = (44.8, 50.4, 134.4, 100.8)  # [100, 200, 300, 400] on the 0..1000 grid of a 448x252 frame
BOX_JSON = '[{{"label": "fall", "start": 1, "end": 2, "box": {}}}]'

CASES: dict[str, Case] = {
    # --- framing: think blocks, answer tags, fences, prose ------------------------------------------
    "clean_json": Case(
        f"[{ONE}]",
        True,
        1,
        check=lambda o: (
            (_det(o).label, _det(o).start_s, _det(o).end_s, _det(o).confidence, _det(o).description)
            == ("fall", 3.5, 6.0, 0.92, "man slips on ice")
        ),
    ),
    "fenced": Case(
        f"```json\n[{ONE}]\n```", True, 1, check=lambda o: _det(o).end_s == 6.0 and not o.warnings
    ),
    "think_block": Case(
        f"<think>Frame 3 shows a man on ice.\nHe slips.</think>\n[{ONE}]",
        True,
        1,
        check=lambda o: o.thinking == "Frame 3 shows a man on ice.\nHe slips." and o.error is None,
    ),
    "thinking_disabled": Case(f"<think></think>\n[{ONE}]", True, 1, check=lambda o: o.thinking == ""),
    "no_think_block": Case(f"[{ONE}]", True, 1, check=lambda o: o.thinking is None),
    "unterminated_think": Case(
        "<think>The person near the door seems to",
        False,
        0,
        error="unterminated <think>",
        check=lambda o: o.thinking == "The person near the door seems to",
    ),
    "only_think_tag": Case(
        "<think>", False, 0, error="unterminated <think>", check=lambda o: o.thinking == ""
    ),
    "template_opened_think": Case(
        f"I should list the falls.</think>{ONE}",
        True,
        1,
        check=lambda o: o.thinking == "I should list the falls.",
    ),
    "glm41v_answer_wrapper": Case(
        f"<think>ok</think><answer>```json\n[{ONE}]\n```</answer><|user|>",
        True,
        1,
        check=lambda o: o.thinking == "ok" and o.error is None and not o.warnings,
    ),
    "unterminated_answer_tag": Case(f"<answer>[{ONE}]", True, 1, warning="unterminated <answer>"),
    "prose_around_json": Case(
        f"Sure! Here are the events I found:\n[{ONE}]\nLet me know if you need more detail.",
        True,
        1,
        warning="ignored",
        check=lambda o: _det(o).label == "fall",
    ),
    "bracketed_prose_before_json": Case(
        f"At [00:05] something happens; events: [{ONE}]", True, 1, check=lambda o: _det(o).start_s == 3.5
    ),
    "answer_highlighted_with_box_markers": Case(
        "<think>two events</think><|begin_of_box|>" + TWO + "<|end_of_box|>",
        True,
        2,
        check=lambda o: [d.end_s for d in o.detections] == [2, 9] and not o.unassigned_boxes,
    ),
    "special_tokens": Case(f"[{ONE}]<|endoftext|>", True, 1, check=lambda o: not o.warnings),
    # --- damaged JSON -------------------------------------------------------------------------------
    "truncated_mid_string": Case(
        '[{"label": "fall", "start": 1, "end": 2, "confidence": 0.9}, {"label": "fig',
        True,
        1,
        error="truncated",
        check=lambda o: _det(o).label == "fall" and _det(o).confidence == 0.9,
    ),
    "truncated_mid_object": Case(
        '{"events": [{"label": "fall", "start": 1, "end": 2}, {"label": "fight", "start": 5, "end": 1',
        True,
        1,
        error="truncated",
        warning="truncated",
        check=lambda o: _det(o).label == "fall",
    ),
    "truncated_mid_array_of_boxes": Case(
        '[{"label": "fall", "start": 1, "end": 2, "boxes": [[100, 200, 300, 400], [5, 6',
        True,
        1,
        error="truncated",
        check=lambda o: _det(o).end_s == 2.0 and _det(o).boxes == [],
    ),
    "truncated_before_any_item": Case('[{"label": "fall", "start": 1, "end": 1', False, 0, error="truncated"),
    "truncated_right_after_open": Case('```json\n{"events": [', False, 0, error="truncated"),
    "trailing_commas": Case(
        '[{"label": "fall", "start": 1, "end": 2, "confidence": 0.4,},]',
        True,
        1,
        check=lambda o: o.error is None and _det(o).confidence == 0.4,
    ),
    "single_quotes": Case(
        "[{'label': 'fall', 'start': 1, 'end': 2, 'confidence': 0.7, 'description': 'man\\'s \"bad\" fall'}]",
        True,
        1,
        check=lambda o: _det(o).description == 'man\'s "bad" fall',
    ),
    "python_literals": Case(
        "[{'label': 'fall', 'start': 1, 'end': 2, 'confidence': None, 'verified': True, 'boxes': None}]",
        True,
        1,
        warning="no confidence",
        check=lambda o: _det(o).confidence == 0.5,
    ),
    "unquoted_keys_and_values": Case(
        "{events: [{label: slip and fall, start: 1, end: 2, confidence: high}]}",
        True,
        1,
        check=lambda o: (_det(o).label, _det(o).confidence) == ("slip and fall", 0.9),
    ),
    "missing_comma_between_objects": Case(
        '[{"label": "a", "start": 1, "end": 2} {"label": "b", "start": 3, "end": 4}]',
        True,
        2,
        check=lambda o: [d.label for d in o.detections] == ["a", "b"],
    ),
    "escaped_unicode_and_lone_surrogate": Case(
        '[{"label": "fall", "start": 1, "end": 2, "description": "\\ud83d\\ude00 then \\ud83d"}]',
        True,
        1,
        check=lambda o: _det(o).description == "\U0001f600 then \ufffd",
    ),
    # --- shapes -------------------------------------------------------------------------------------
    "nested_wrapper_keys": Case(
        f'{{"result": {{"detections": [{ONE}]}}}}', True, 1, check=lambda o: _det(o).label == "fall"
    ),
    "single_bare_item_object": Case(ONE, True, 1, check=lambda o: _det(o).description == "man slips on ice"),
    "unexpected_wrapper_key": Case(
        f'{{"falls": [{ONE}]}}',
        True,
        1,
        warning="unexpected key 'falls'",
        check=lambda o: _det(o).end_s == 6.0,
    ),
    "empty_list_means_nothing_seen": Case("[]", True, 0, check=lambda o: o.error is None),
    "empty_wrapped_list": Case('```json\n{"events": []}\n```', True, 0, check=lambda o: o.error is None),
    "items_missing_fields": Case(
        '[{"label": "fall"}, {"start": 1, "end": 2}, {"label": "fight", "start": 1, "end": 2}, 7]',
        True,
        1,
        error="3 item(s) skipped",
        warning="no label",
        check=lambda o: _det(o).label == "fight",
    ),
    "null_json": Case("null", False, 0, error="got NoneType"),
    "number_json": Case("42", False, 0, error="got int"),
    "string_json": Case('"no events detected"', False, 0, error="got str"),
    "list_of_strings": Case('["fall", "fight"]', False, 0, error="none of the 2 item(s)", warning="got str"),
    # --- times --------------------------------------------------------------------------------------
    "time_formats": Case(
        '[{"label": "a", "start": "00:01:05", "end": "00:01:06.5"},'
        ' {"label": "b", "start": "1:05", "end": 66}, {"label": "c", "start": "65s", "end": "66 sec"},'
        ' {"label": "d", "start": "65.5", "end": "1m6s"},'
        ' {"label": "e", "start": "00:00:03,250", "end": "4500ms"}]',
        True,
        5,
        kwargs={"clip_duration_s": 120.0},
        check=lambda o: (
            [(d.start_s, d.end_s) for d in o.detections]
            == [(65, 66.5), (65, 66), (65, 66), (65.5, 66), (3.25, 4.5)]
        ),
    ),
    "unquoted_clock_times": Case(
        '[{"label": "fall", "start": 00:05, "end": 00:07.5}]',
        True,
        1,
        check=lambda o: (_det(o).start_s, _det(o).end_s) == (5.0, 7.5),
    ),
    "range_field_and_alt_keys": Case(
        '[{"event": "fight", "timestamp": "00:05 - 00:09", "score": 0.7},'
        ' {"type": "fall", "begin": "12s", "to": "14s", "probability": "40%"}]',
        True,
        2,
        check=lambda o: (
            [(d.label, d.start_s, d.end_s, d.confidence) for d in o.detections]
            == [("fight", 5, 9, 0.7), ("fall", 12, 14, 0.4)]
        ),
    ),
    "instant_event": Case(
        '[{"label": "door opens", "time": "0:12"}]',
        True,
        1,
        check=lambda o: (_det(o).start_s, _det(o).end_s) == (12, 12),
    ),
    "out_of_range_times_clamped": Case(
        '[{"label": "fall", "start": -2, "end": 45}]',
        True,
        1,
        warning="clamped",
        check=lambda o: (_det(o).start_s, _det(o).end_s) == (0.0, DUR),
    ),
    "event_outside_clip_skipped": Case(
        '[{"label": "fall", "start": 40, "end": 50}, {"label": "fight", "start": 1, "end": 2}]',
        True,
        1,
        error="1 item(s) skipped",
        warning="outside the clip",
        check=lambda o: _det(o).label == "fight",
    ),
    "swapped_times": Case(
        '[{"label": "fall", "start": "00:09", "end": "00:04"}]',
        True,
        1,
        warning="swapped",
        check=lambda o: (_det(o).start_s, _det(o).end_s) == (4, 9),
    ),
    "unreadable_time": Case(
        '[{"label": "fall", "start": "soon", "end": "later"}]', False, 0, warning="start time"
    ),
    # --- confidence ---------------------------------------------------------------------------------
    "percent_confidence": Case(
        '[{"label": "a", "start": 1, "end": 2, "confidence": 85}, {"label": "b", "start": 1, "end": 2,'
        ' "confidence": "85%"}, {"label": "c", "start": 1, "end": 2, "confidence": 1}]',
        True,
        3,
        check=lambda o: [d.confidence for d in o.detections] == pytest.approx([0.85, 0.85, 1.0]),
    ),
    "word_confidence": Case(
        '[{"label": "a", "start": 1, "end": 2, "confidence": "High"}, {"label": "b", "start": 1, "end": 2,'
        ' "confidence": "low"}, {"label": "c", "start": 1, "end": 2, "confidence": "medium confidence"}]',
        True,
        3,
        check=lambda o: [d.confidence for d in o.detections] == [0.9, 0.3, 0.6],
    ),
    "confidence_out_of_range": Case(
        '[{"label": "a", "start": 1, "end": 2, "confidence": 250}]',
        True,
        1,
        warning="out of range",
        check=lambda o: _det(o).confidence == 1.0,
    ),
    # --- boxes --------------------------------------------------------------------------------------
    "box_field_plain_list": Case(
        BOX_JSON.format("[100, 200, 300, 400]"), True, 1, check=lambda o: _box(o) == _approx(*SCALED)
    ),
    "box_marker_square": Case(
        BOX_JSON.format(MARK.format("[100,200,300,400]")),
        True,
        1,
        check=lambda o: _box(o) == _approx(*SCALED),
    ),
    "box_marker_double_square": Case(
        BOX_JSON.format(MARK.format("[[100, 200, 300, 400]]")),
        True,
        1,
        check=lambda o: _box(o) == _approx(*SCALED),
    ),
    "box_marker_round": Case(
        BOX_JSON.format(MARK.format("(100,200,300,400)")),
        True,
        1,
        check=lambda o: _box(o) == _approx(*SCALED),
    ),
    "box_marker_angle": Case(
        BOX_JSON.format(MARK.format("<100,200,300,400>")),
        True,
        1,
        check=lambda o: _box(o) == _approx(*SCALED),
    ),
    "box_marker_inside_string": Case(
        BOX_JSON.format('"' + MARK.format("[100,200,300,400]") + '"'),
        True,
        1,
        check=lambda o: _box(o) == _approx(*SCALED),
    ),
    "box_marker_in_description": Case(
        '[{"label": "fall", "start": 1, "end": 2, "description": "the man '
        + MARK.format("[100,200,300,400]")
        + ' slips"}]',
        True,
        1,
        check=lambda o: _box(o) == _approx(*SCALED) and _det(o).description == "the man slips",
    ),
    "several_boxes_in_one_marker": Case(
        BOX_JSON.format(MARK.format("[[0,0,500,500],[500,500,1000,1000]]")),
        True,
        1,
        check=lambda o: (_box(o, 0), _box(o, 1)) == (_approx(0, 0, 224, 126), _approx(224, 126, 448, 252)),
    ),
    "box_dicts_with_labels": Case(
        BOX_JSON.format(
            '[{"label": "person", "bbox_2d": [100, 200, 300, 400]}, {"x1": 0, "y1": 0, "x2": 10, "y2": 10}]'
        ),
        True,
        1,
        check=lambda o: [b.label for b in _det(o).boxes] == ["person", None] and _box(o) == _approx(*SCALED),
    ),
    "box_swapped_and_out_of_grid": Case(
        BOX_JSON.format("[600, 700, 200, 1200]"),
        True,
        1,
        warning="outside the 0..1000 grid",
        check=lambda o: _box(o) == _approx(89.6, 176.4, 268.8, 252.0),
    ),
    "marker_outside_json_single_detection": Case(
        "The man "
        + MARK.format("[100,200,300,400]")
        + ' falls.\n```json\n[{"label": "fall", "start": 1, "end": 2}]\n```',
        True,
        1,
        warning="attached 1 box",
        check=lambda o: _box(o) == _approx(*SCALED) and o.unassigned_boxes == [],
    ),
    "marker_outside_json_two_detections": Case(
        "Two people " + MARK.format("[100,200,300,400]") + f" are involved. {TWO}",
        True,
        2,
        warning="could not be tied",
        check=lambda o: (
            len(o.unassigned_boxes) == 1
            and (o.unassigned_boxes[0].x1, o.unassigned_boxes[0].y2) == _approx(44.8, 100.8)
            and all(not d.boxes for d in o.detections)
        ),
    ),
    "prose_with_boxes_no_json": Case(
        "A person falls " + MARK.format("[100,200,300,400]") + " near the door.",
        False,
        0,
        error="no JSON",
        check=lambda o: len(o.unassigned_boxes) == 1,
    ),
    # --- labels -------------------------------------------------------------------------------------
    "labels_normalised_to_allowed": Case(
        '[{"label": "Person_Falling", "start": 1, "end": 2}, {"label": " FIGHT ", "start": 1, "end": 2},'
        ' {"label": "falls down", "start": 1, "end": 2}, {"label": "figth", "start": 1, "end": 2},'
        ' {"label": "loitering", "start": 1, "end": 2}]',
        True,
        5,
        warning="not one of the allowed labels",
        kwargs={"allowed_labels": LABELS},
        check=lambda o: (
            [d.label for d in o.detections] == ["person falling", "fight", "fall", "fight", "loitering"]
        ),
    ),
    # --- garbage ------------------------------------------------------------------------------------
    "empty_string": Case("", False, 0, error="empty model output"),
    "whitespace_only": Case("  \n\t  \n", False, 0, error="empty model output"),
    "empty_answer_after_think": Case("<think>nothing to see</think>\n", False, 0, error="empty answer"),
    "html": Case("<html><body><div class='x'>No events</div></body></html>", False, 0, error="no JSON"),
    "plain_refusal": Case(
        "I'm sorry, I cannot determine any events in this clip.", False, 0, error="no JSON"
    ),
    "random_unicode_garbage": Case(
        _garbage(7, 5000).replace("[", "").replace("{", ""), False, 0, error="no JSON"
    ),
    "latin1_bytes_garbage": Case(
        bytes(range(256)).decode("latin-1") * 4, False, 0, error="object without one"
    ),
    "many_open_brackets_200kb": Case("[" * 200_000, False, 0, error="nested deeper than"),
    "deeply_nested_balanced": Case("[" * 5000 + "]" * 5000, False, 0, error="nested deeper than"),
    "moderately_nested_list": Case("[" * 50 + "]" * 50, False, 0, error="none of the 1 item(s)"),
    # --- segments -----------------------------------------------------------------------------------
    "segments_chapters_wrapper": Case(
        '{"chapters": [{"start": "00:12", "end": "00:30", "title": "Cooking", "summary": "stirs the pot"},'
        ' {"start": "00:00", "end": "00:12", "title": "Intro"}]}',
        True,
        2,
        task="segments",
        check=lambda o: (
            [(s.start_s, s.end_s, s.title, s.description) for s in o.segments]
            == [(0, 12, "Intro", ""), (12, 30, "Cooking", "stirs the pot")]
        ),
    ),
    "segments_dedupe_zero_length_and_missing_end": Case(
        '[{"start": 10, "end": 20, "title": "B"}, {"start": 0, "end": 10, "title": "A"},'
        ' {"start": 0, "end": 10, "title": "A"}, {"start": 5, "end": 5, "title": "blip"},'
        ' {"start": 3, "title": "no end"}]',
        True,
        2,
        task="segments",
        error="1 item(s) skipped",
        warning="duplicate",
        check=lambda o: (
            [s.title for s in o.segments] == ["A", "B"] and any("zero-length" in w for w in o.warnings)
        ),
    ),
    "segments_with_box_marker": Case(
        '[{"start": 0, "end": 5, "title": "kitchen ' + MARK.format("[0,0,1000,1000]") + '"}]',
        True,
        1,
        task="segments",
        warning="could not be tied",
        check=lambda o: o.segments[0].title == "kitchen" and len(o.unassigned_boxes) == 1,
    ),
    "segments_empty": Case('{"segments": []}', True, 0, task="segments", check=lambda o: o.error is None),
    # --- caption ------------------------------------------------------------------------------------
    "caption_json": Case(
        '{"caption": "A man rides a bike along the river."}',
        True,
        1,
        task="caption",
        check=lambda o: o.caption == Caption(text="A man rides a bike along the river.") and not o.warnings,
    ),
    "caption_prose": Case(
        "<think>Describe it.</think>Caption: A dog chases a ball\nacross the lawn.",
        True,
        1,
        task="caption",
        warning="plain text",
        check=lambda o: o.caption is not None and o.caption.text == "A dog chases a ball across the lawn.",
    ),
    "caption_prose_with_brackets": Case(
        "A man [left] hands a box to a woman [right].",
        True,
        1,
        task="caption",
        check=lambda o: (
            o.caption is not None and o.caption.text == "A man [left] hands a box to a woman [right]."
        ),
    ),
    "caption_json_string": Case(
        '"A red car turns left."',
        True,
        1,
        task="caption",
        check=lambda o: o.caption == Caption(text="A red car turns left."),
    ),
    "caption_fenced_alt_key": Case(
        '```json\n{"description": "Two kids play chess."}\n```',
        True,
        1,
        task="caption",
        check=lambda o: o.caption == Caption(text="Two kids play chess."),
    ),
    "caption_truncated": Case(
        '{"caption": "A man walks into the kitch',
        True,
        1,
        task="caption",
        error="truncated",
        check=lambda o: o.caption == Caption(text="A man walks into the kitch"),
    ),
    "caption_with_box_marker": Case(
        "A cat " + MARK.format("[0,0,1000,1000]") + " sleeps.",
        True,
        1,
        task="caption",
        check=lambda o: (
            o.caption == Caption(text="A cat sleeps.")
            and (o.unassigned_boxes[0].x2, o.unassigned_boxes[0].y2) == (448.0, 252.0)
        ),
    ),
    "caption_highlighted_with_box_markers": Case(
        "<|begin_of_box|>A boy flies a kite (2 of them) on the beach.<|end_of_box|>",
        True,
        1,
        task="caption",
        check=lambda o: (
            o.caption == Caption(text="A boy flies a kite (2 of them) on the beach.")
            and not o.unassigned_boxes
        ),
    ),
    "caption_json_without_caption": Case('{"foo": 1}', False, 0, task="caption", error="no caption"),
    "caption_unterminated_think": Case("<think>Let me", False, 0, task="caption", error="unterminated"),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_parse_table(case: Case) -> None:
    assert case.check or case.error or case.warning, "every row needs a specific expectation"
    kwargs: dict[str, Any] = {"clip_duration_s": DUR, "width": W, "height": H, **case.kwargs}
    out = parse_output(case.raw, case.task, **kwargs)
    assert out.raw == case.raw
    assert out.task == case.task
    assert out.ok is case.ok, (out.error, out.warnings)
    assert out.item_count == case.n, out
    if case.error is not None:
        assert out.error is not None and case.error in out.error, out.error
    elif not case.ok:
        assert out.error, "a failed parse must say why"
    if case.warning is not None:
        assert any(case.warning in w for w in out.warnings), out.warnings
    if case.check is not None:
        assert case.check(out), out
    # Everything the parser returns must survive the wire unchanged.
    assert ParsedOutput.model_validate_json(out.model_dump_json()) == out


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 45


def test_times_never_leave_the_clip() -> None:
    raw = (
        '[{"label": "a", "start": -5, "end": 3}, {"label": "b", "start": 25, "end": 99},'
        ' {"label": "c", "time": 31}]'
    )
    out = parse_output(raw, "events", clip_duration_s=DUR, width=W, height=H)
    assert [(d.start_s, d.end_s) for d in out.detections] == [(0, 3), (25, DUR)]
    assert out.error == "1 item(s) skipped"


def test_one_megabyte_of_garbage_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Work is bounded by the token budget, counted directly rather than timed."""
    calls = 0
    real = jsonrepair._TOKEN_RE

    class Counting:
        def match(self, text: str, pos: int) -> Any:
            nonlocal calls
            calls += 1
            return real.match(text, pos)

    monkeypatch.setattr(jsonrepair, "_TOKEN_RE", Counting())
    rng = random.Random(3)
    garbage = "".join(rng.choice("[]{}\",:'ab1 \n\\") for _ in range(1_000_000))
    out = parse_output(garbage, "events", clip_duration_s=DUR, width=W, height=H)
    assert not out.ok and out.raw == garbage
    assert calls <= parse_mod.MAX_TOKENS + parse_mod.MAX_CANDIDATES


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "raw",
    [
        "[" + "1," * 500_000,
        "[" + '{"label": "x", "start": 1, "end": 2},' * 30_000,
        '[{"label": "x", "start": "' + "1" * 200_000 + 'x", "end": 2, "box": "' + "1." * 100_000 + '"}]',
        "<|begin_of_box|>" * 60_000,
        '"' * 1_000_000,
        _garbage(11, 1_000_000),
    ],
    ids=["open_array", "truncated_huge_list", "long_digit_runs", "unclosed_markers", "quotes", "unicode"],
)
def test_large_adversarial_inputs_finish(raw: str) -> None:
    # The generous timeout only catches super-linear blow-ups (a quadratic regex took minutes here).
    for task in ("events", "segments", "caption"):
        out = parse_output(raw, task, clip_duration_s=DUR, width=W, height=H)
        assert out.raw == raw


def test_truncated_huge_list_keeps_parsed_items() -> None:
    raw = "[" + '{"label": "x", "start": 1, "end": 2, "confidence": 1},' * 30_000
    out = parse_output(raw, "events", clip_duration_s=DUR, width=W, height=H)
    assert out.ok and out.error is not None and "truncated" in out.error
    assert 1_000 < len(out.detections) < 30_000


def test_unknown_task_does_not_raise() -> None:
    out = parse_output("[]", "chapters please", clip_duration_s=DUR, width=W, height=H)
    assert not out.ok and out.error is not None and "unknown task" in out.error and out.raw == "[]"


def test_task_name_is_normalised() -> None:
    assert parse_output("[]", " Events ", clip_duration_s=DUR, width=W, height=H).ok


def test_single_string_allowed_labels_is_one_label() -> None:
    raw = '[{"label": "A fall", "start": 1, "end": 2}, {"label": "a", "start": 1, "end": 2}]'
    out = parse_output(raw, "events", clip_duration_s=DUR, width=W, height=H, allowed_labels="fall")
    assert [d.label for d in out.detections] == ["fall", "a"]


def test_bytes_input_is_decoded() -> None:
    out = parse_output(f"[{ONE}]".encode(), "events", clip_duration_s=DUR, width=W, height=H)  # type: ignore[arg-type]
    assert out.ok and out.raw == f"[{ONE}]"


def test_invalid_duration_disables_clamping() -> None:
    out = parse_output(
        '[{"label": "a", "start": 50, "end": 60}]', "events", clip_duration_s=0, width=W, height=H
    )
    assert out.ok and (out.detections[0].start_s, out.detections[0].end_s) == (50, 60)
    assert any("clip_duration_s" in w for w in out.warnings)


def test_invalid_frame_size_drops_boxes_with_warning() -> None:
    out = parse_output(BOX_JSON.format("[1, 2, 3, 4]"), "events", clip_duration_s=DUR, width=0, height=H)
    assert out.ok and out.detections[0].boxes == []
    assert any("dropped" in w for w in out.warnings)


def test_internal_error_is_contained(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(parse_mod, "_split_thinking", boom)
    out = parse_output("[]", "segments", clip_duration_s=DUR, width=W, height=H)
    assert (out.ok, out.task, out.raw) == (False, "segments", "[]")
    assert out.error is not None and "kaboom" in out.error


def test_warnings_are_capped() -> None:
    raw = "[" + ", ".join('{"label": "x", "start": 1, "end": 2}' for _ in range(500)) + "]"
    out = parse_output(raw, "events", clip_duration_s=DUR, width=W, height=H)
    assert len(out.detections) == 500
    assert len(out.warnings) == parse_mod.MAX_WARNINGS + 1
    assert out.warnings[-1] == "400 more warning(s) suppressed"


# --- result types ---------------------------------------------------------------------------------


def test_box_from_normalized_scales_clamps_and_reorders() -> None:
    assert Box.from_normalized([100, 200, 300, 400], W, H) == Box(x1=44.8, y1=50.4, x2=134.4, y2=100.8)
    assert Box.from_normalized([1000, 1000, 0, 0], W, H, label="p") == Box(
        x1=0, y1=0, x2=448, y2=252, label="p"
    )
    assert Box.from_normalized([-50, 0, 2000, 500], W, H) == Box(x1=0, y1=0, x2=448, y2=126)


@pytest.mark.parametrize(
    ("coords", "width", "height"),
    [([1, 2, 3], W, H), ([1, 2, 3, float("nan")], W, H), ([1, 2, 3, 4], 0, H), ([1, 2, 3, 4], W, -1)],
)
def test_box_from_normalized_rejects(coords: list[float], width: int, height: int) -> None:
    with pytest.raises(ValueError):
        Box.from_normalized(coords, width, height)


def test_result_types_enforce_invariants() -> None:
    with pytest.raises(ValidationError):
        Box(x1=5, y1=0, x2=1, y2=1)
    with pytest.raises(ValidationError):
        Detection(label="a", start_s=3, end_s=2, confidence=0.5)
    with pytest.raises(ValidationError):
        Detection(label="  ", start_s=1, end_s=2, confidence=0.5)
    with pytest.raises(ValidationError):
        Detection(label="a", start_s=1, end_s=2, confidence=1.5)
    with pytest.raises(ValidationError):
        Segment(start_s=-1, end_s=2)
    with pytest.raises(ValidationError):
        Caption(text="")
    with pytest.raises(ValidationError):
        ParsedOutput(task="caption", ok=True, raw="x")
    with pytest.raises(ValidationError):
        ParsedOutput(
            task="segments",
            ok=True,
            raw="x",
            detections=[Detection(label="a", start_s=0, end_s=1, confidence=1)],
        )
    with pytest.raises(ValidationError):
        ParsedOutput.model_validate({"task": "events", "ok": True, "raw": "x", "extra": 1})
