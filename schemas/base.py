"""The base of canonical models: unknown fields are refused, text is stripped."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["MAX_STRING", "CanonicalModel"]

#: Default longest string in a canonical model (characters).
MAX_STRING = 10_000


class CanonicalModel(BaseModel):
    """Base class for operation inputs and outputs.

    Unknown fields are refused (a misspelt field must not be silently ignored), surrounding
    whitespace is stripped from text, and no string may be longer than ``MAX_STRING`` unless a
    model says otherwise (a document with attachments, say).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, str_max_length=MAX_STRING)
