"""The base of canonical models: unknown fields are refused, text is stripped."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["CanonicalModel"]


class CanonicalModel(BaseModel):
    """Base class for operation inputs and outputs.

    Unknown fields are refused (a misspelt field must not be silently ignored), and surrounding
    whitespace is stripped from text.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
