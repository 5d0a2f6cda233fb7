"""Schemas of ``POST /v1/streams/{id}/ask``: a question about a stream's stored results, and the answer."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.schemas.keys import JSON_BODY_ERRORS, problem_doc
from api.schemas.results import ERRORS
from vstream.ask import AskAnswer

__all__ = ["ASK_ERRORS", "ASK_EXAMPLE", "AskAnswer", "AskRequest"]


class AskRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"question": "When did the speaker define entropy?", "start": 0, "end": 3600}]
        },
    )

    question: str = Field(min_length=1, max_length=2000, description="The question, in any language.")
    start: float | None = Field(
        None, ge=0, description="Media seconds; records ending before it are left out."
    )
    end: float | None = Field(
        None, ge=0, description="Media seconds; records starting after it are left out."
    )
    thinking: bool | None = Field(
        None, description="GLM thinking mode for this question (default: the setting)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.question.strip():
            raise ValueError("question must not be blank")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError(f"start ({self.start:g}) is after end ({self.end:g}); expected start <= end")
        return self


ASK_EXAMPLE: dict[str, Any] = {
    "schema_version": 1,
    "stream_id": "physics-101",
    "question": "When did the speaker define entropy?",
    "start": 0,
    "end": 3600,
    "answer": "Entropy is defined at about 21 minutes, as the number of ways to arrange a system.",
    "found": True,
    "citations": [
        {
            "kind": "segment",
            "ref": "physics-101-3f2a9c1d0e-0000042-s0",
            "start": 1260.0,
            "end": 1318.0,
            "text": "segment 'Entropy': the speaker defines entropy as a count of microstates",
            "repaired": False,
        }
    ],
    "no_data": False,
    "records": 143,
    "truncated": False,
    "chunks": 2,
    "dropped_citations": 0,
    "thinking": False,
    "model_id": "zai-org/GLM-4.5V",
}

ASK_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    **JSON_BODY_ERRORS,
    502: problem_doc(502, "The model gave no usable answer", "No answer", "the model gave no usable answer"),
    503: problem_doc(
        503, "The model server is unreachable or overloaded", "Model unavailable", "model server unavailable"
    ),
}
