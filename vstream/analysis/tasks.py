"""Tasks as data: prompt templates live in ``vstream/prompts/*.txt`` and results are versioned by the
hash of the template that produced them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from importlib import resources

from vstream.model.base import TaskSpec
from vstream.vocabulary import TASKS, Task


@cache
def template(task: Task) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    return resources.files("vstream.prompts").joinpath(f"{task}.txt").read_text(encoding="utf-8").strip()


def template_hash(task: Task) -> str:
    return hashlib.sha256(template(task).encode()).hexdigest()[:12]


def render(
    task: Task,
    *,
    duration_s: float,
    event_types: Sequence[str] = (),
    thinking: bool = False,
    max_new_tokens: int = 1024,
) -> TaskSpec:
    if task == "events" and not event_types:
        raise ValueError("task 'events' needs at least one event type")
    names = ", ".join(f'"{e.strip()}"' for e in event_types if e.strip())
    prompt = template(task).format(duration=f"{duration_s:g}", event_types=names)
    # The hash covers the template and the event types, since both change what the model is asked.
    version = hashlib.sha256(f"{template_hash(task)}|{names}".encode()).hexdigest()[:12]
    return TaskSpec(
        name=task,
        prompt=prompt,
        prompt_hash=version,
        thinking=thinking,
        max_new_tokens=max_new_tokens,
        event_types=tuple(e.strip() for e in event_types),
    )
