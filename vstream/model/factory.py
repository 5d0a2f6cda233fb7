"""Pick the backend named by ``model.type``; each backend lives in its own module, imported on demand so
an OpenAI-only worker never imports torch."""

from __future__ import annotations

from vstream.config import ModelSettings
from vstream.model.base import ModelBackend


def make_backend(settings: ModelSettings) -> ModelBackend:
    """The configured backend, checked: raises :class:`~vstream.model.base.BackendError` when it cannot
    work at all (no such model, server unreachable, no frame form the server takes)."""
    if settings.type == "transformers":
        from vstream.model.transformers_backend import TransformersBackend

        return TransformersBackend.from_settings(settings)
    if settings.type == "openai":
        from vstream.model.openai_backend import OpenAIBackend

        backend = OpenAIBackend.from_settings(settings)
        try:
            backend.check()
            if settings.frames == "auto":
                backend.probe_frames()
        except BaseException:
            backend.close()
            raise
        return backend
    if settings.type == "scripted":
        from vstream.model.scripted_backend import ScriptedBackend

        return ScriptedBackend.from_settings(settings)
    raise ValueError(f"unknown model type {settings.type!r}")
