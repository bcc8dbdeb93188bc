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


class ChangeRequest(CanonicalModel):
    parcel_id: str = Field(pattern=r"^[0-9]{2}-[0-9]{4}$")
    change: str = Field(max_length=200, description="What changed, e.g. a new land use.")


class ChangeReceipt(CanonicalModel):
    change_id: str


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

    @operation(
        "parcel.register",
        input=ChangeRequest,
        output=ChangeReceipt,
        idempotent=False,
        honours_idempotency_key=True,
    )
    async def register(self, request: ChangeRequest, ctx: Context) -> ChangeReceipt:
        """Register a change now; the registry de-duplicates by Idempotency-Key."""
        return await self._post_change(request, ctx)

    @operation(
        "parcel.change",
        input=ChangeRequest,
        output=ChangeReceipt,
        idempotent=False,
        honours_idempotency_key=True,
        mode="async",
        order_by="parcel_id",
    )
    async def change(self, request: ChangeRequest, ctx: Context) -> ChangeReceipt:
        """Record a change of a parcel, delivered in order per parcel (store-and-forward)."""
        return await self._post_change(request, ctx)

    async def _post_change(self, request: ChangeRequest, ctx: Context) -> ChangeReceipt:
        headers = {"X-Api-Key": ctx.credentials["api_key"]}
        if ctx.idempotency_key is not None:
            headers["Idempotency-Key"] = ctx.idempotency_key
        reply = await ctx.http.post(
            f"{ctx.upstream.base_url}/parcels/{request.parcel_id}/changes",
            json={"change": request.change},
            headers=headers,
            timeout=ctx.upstream.http_timeout,
        )
        raise_for_upstream_status(reply)
        return ChangeReceipt(change_id=str(reply.json()["id"]))
