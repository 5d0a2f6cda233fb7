"""A backend that answers from a script instead of a model: for tests and demos that must control what
"the model" says (e.g. one event per clip), behind the same interface as the real backends.

The script is a JSON file: ``{"delay_s": 0.1, "outputs": {"events": "<answer text>", ...}}``; the answer
for a clip is the text for its task with ``{clip_id}`` and ``{index}`` substituted. A list of texts is
used in turn: clip ``i`` gets item ``i % len``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from vstream.config import ModelSettings
from vstream.model.base import BackendError, ClipInput, Generation, TaskSpec


class ScriptedBackend:
    def __init__(
        self, outputs: dict[str, str | list[str]], *, delay_s: float = 0.0, model_id: str = "scripted"
    ) -> None:
        self.outputs, self.delay_s, self.model_id = outputs, delay_s, model_id

    @classmethod
    def from_settings(cls, settings: ModelSettings) -> ScriptedBackend:
        path = Path(settings.model)
        try:
            script = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot read the model script {path}: {exc}") from exc
        return cls(
            script.get("outputs", {}),
            delay_s=float(script.get("delay_s", 0.0)),
            model_id=f"scripted:{path.name}",
        )

    def generate(self, clips: Sequence[ClipInput], task: TaskSpec) -> list[Generation]:
        return [self._one(clip, task) for clip in clips]

    def _one(self, clip: ClipInput, task: TaskSpec) -> Generation:
        started = time.monotonic()
        time.sleep(self.delay_s)
        script = self.outputs.get(task.name)
        if script is None:
            return Generation(error=f"the script has no output for task {task.name!r}", retryable=False)
        suffix = clip.clip_id.rsplit("-", 1)[-1]
        index = int(suffix) if suffix.isdigit() else 0
        text = script[index % len(script)] if isinstance(script, list) else script
        text = text.replace("{clip_id}", clip.clip_id).replace("{index}", str(index))
        tokens = (len(clip.frames) // 2) * (clip.height // 28) * (clip.width // 28)
        return Generation(text=text, seconds=time.monotonic() - started, visual_tokens=tokens)

    def generate_text(
        self, prompts: Sequence[str], *, max_new_tokens: int = 1024, thinking: bool = False
    ) -> list[Generation]:
        """The script's ``text`` output for every prompt (``{n}``: the prompt's position)."""
        text = self.outputs.get("text")
        if not isinstance(text, str):
            return [Generation(error="the script has no 'text' output", retryable=False) for _ in prompts]
        return [Generation(text=text.replace("{n}", str(n))) for n in range(len(prompts))]

    def close(self) -> None:
        pass
