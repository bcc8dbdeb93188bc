"""The adapter of the benchmark's JSON scenario: a provincial register reached over REST JSON.

It does what a real JSON adapter does on every call, and nothing more: one upstream request with
the service's credential, the upstream's status checked, its Vietnamese-named reply read and
turned into the canonical output model. The benchmark's fixed-reply upstream (nginx or
``bench/upstream.py``) answers every ``GET /hoso/{id}`` with :data:`UPSTREAM_REPLY`.
"""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import Field

from adapters.base import Adapter, Context, operation, raise_for_upstream_status
from schemas.base import CanonicalModel

__all__ = ["UPSTREAM_REPLY", "RecordQuery", "RecordStatus", "RelayAdapter"]

#: The fixed JSON reply of the benchmark's upstream, in the register's own dialect.
UPSTREAM_REPLY = json.dumps(
    {
        "maHoSo": "000.00.00.H00-261121-0001",
        "trangThai": 4,
        "tenTrangThai": "Đang xử lý",
        "ngayCapNhat": "2026-11-21T09:30:00+07:00",
        "coQuanXuLy": "000.00.00.H00",
    },
    ensure_ascii=False,
).encode()


class RecordQuery(CanonicalModel):
    record_id: str = Field(
        pattern=r"^[0-9.A-Z]{3,20}-[0-9]{6}-[0-9]{4}$", description="The register's dossier id."
    )


class RecordStatus(CanonicalModel):
    record_id: str
    status: int = Field(ge=0, le=20)
    status_name: str
    updated_at: datetime
    agency: str


class RelayAdapter(Adapter):
    description = "Benchmark: a provincial register over REST JSON (bench/relay.py)"

    @operation("record.status", input=RecordQuery, output=RecordStatus)
    async def status(self, query: RecordQuery, ctx: Context) -> RecordStatus:
        """The status of one dossier in the register."""
        reply = await ctx.http.get(
            f"{ctx.upstream.base_url}/hoso/{query.record_id}",
            headers={"X-Api-Key": ctx.credentials["api_key"]},
            timeout=ctx.upstream.http_timeout,
        )
        raise_for_upstream_status(reply)
        body = reply.json()
        return RecordStatus(
            record_id=body["maHoSo"],
            status=body["trangThai"],
            status_name=body["tenTrangThai"],
            updated_at=body["ngayCapNhat"],
            agency=body["coQuanXuLy"],
        )
