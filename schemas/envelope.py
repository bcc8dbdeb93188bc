"""The canonical envelope: the one shape of every reply the bus sends.

```json
{"request_id": "...", "service": "population", "operation": "citizen.lookup",
 "status": "ok", "data": {...}, "error": null}
```

On failure ``status`` is ``"error"``, ``data`` is ``null`` and ``error`` says what went wrong, with
a stable ``code`` from the catalogue in ``bus/errors.py``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["ok", "error"]


class FieldErrorBody(BaseModel):
    """One problem with one request field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(
        description="Dotted path of the field, e.g. `birth_date` or `items[0].name`."
    )
    reason: str = Field(description="Why the value was refused, for a person to read.")
    type: str = Field(description="Machine-readable kind of problem, e.g. `missing`.")


class ErrorBody(BaseModel):
    """What went wrong, in the words of the bus's error catalogue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(description="Stable code, e.g. `client.bad_request` or `upstream.timeout`.")
    message: str = Field(description="Explanation for a person; never carries personal data.")
    field_errors: list[FieldErrorBody] = Field(
        default_factory=list, description="One entry per refused field; empty otherwise."
    )
    retryable: bool = Field(description="Whether the same request may succeed if sent again later.")
    upstream_code: str | None = Field(
        default=None,
        description="The national platform's own error code when it gave one (PayGov's "
        "error_code, the portal's error_code, a SOAP fault's MaLoi), to tell its refusals apart.",
    )


class Envelope(BaseModel):
    """The canonical reply of every bus route, success or failure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str = Field(description="Echo of `X-Request-ID`, or the id the bus generated.")
    service: str | None = Field(description="The service called, when the route names one.")
    operation: str | None = Field(description="The operation called, when the route names one.")
    status: Status
    data: Any = Field(default=None, description="The operation's output on success, else null.")
    error: ErrorBody | None = Field(default=None, description="Set exactly when status is error.")
