"""An example third-party adapter, installed by the tests as the distribution
``lgsp-example-parcels`` with a real ``lgsp.adapters`` entry point (see ``conftest.py``).

It stands for a provincial land-parcel registry reached over plain REST JSON.
"""

from __future__ import annotations

from pydantic import Field

from adapters.base import Adapter, Context, operation, raise_for_upstream_status
from schemas.base import CanonicalModel


class ParcelQuery(CanonicalModel):
    parcel_id: str = Field(pattern=r"^[0-9]{2}-[0-9]{4}$", description="Sheet-parcel number.")


class Parcel(CanonicalModel):
    parcel_id: str
    area_m2: int = Field(ge=0)
    land_use: str


class NoteRequest(CanonicalModel):
    parcel_id: str
    text: str = Field(max_length=200)


class NoteReceipt(CanonicalModel):
    note_id: str


class ParcelAdapter(Adapter):
    description = "Provincial land parcel registry (example plugin)"

    @operation("parcel.get", input=ParcelQuery, output=Parcel)
    async def get(self, query: ParcelQuery, ctx: Context) -> Parcel:
        """Read one land parcel."""
        reply = await ctx.http.get(
            f"{ctx.upstream.base_url}/parcels/{query.parcel_id}",
            headers={"X-Api-Key": ctx.credentials["api_key"]},
            timeout=ctx.upstream.http_timeout,
        )
        raise_for_upstream_status(reply)
        body = reply.json()
        return Parcel(parcel_id=body["id"], area_m2=body["area"], land_use=body["use"])

    @operation("parcel.note", input=NoteRequest, output=NoteReceipt, idempotent=False)
    async def note(self, request: NoteRequest, ctx: Context) -> NoteReceipt:
        """Attach a note to a parcel (not idempotent upstream: never retried)."""
        reply = await ctx.http.post(
            f"{ctx.upstream.base_url}/parcels/{request.parcel_id}/notes",
            json={"text": request.text},
            headers={"X-Api-Key": ctx.credentials["api_key"]},
        )
        raise_for_upstream_status(reply)
        return NoteReceipt(note_id=str(reply.json()["id"]))
