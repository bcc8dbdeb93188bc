"""The adapter contract: everything an integrator needs to connect a new system to the bus.

An adapter is a class with named operations. Each operation takes a validated input model and a
:class:`Context`, and returns an output model; both models are canonical (``schemas/``)::

    class ParcelAdapter(Adapter):
        description = "Provincial land parcel registry"

        @operation("parcel.get", input=ParcelQuery, output=Parcel)
        async def get(self, query: ParcelQuery, ctx: Context) -> Parcel:
            reply = await ctx.http.get(f"{ctx.upstream.base_url}/parcels/{query.parcel_id}")
            raise_for_upstream_status(reply)
            return Parcel.model_validate(reply.json())

and is registered by an entry point in the integrator's own package::

    [project.entry-points."lgsp.adapters"]
    parcels = "lgsp_parcels:ParcelAdapter"

The bus hands the adapter everything it needs (HTTP client, credentials, clock, logger); an
adapter never creates a client per call and never imports FastAPI. Failures leave an operation as
:class:`bus.errors.BusError`; httpx errors that escape are translated by the bus at the boundary.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import httpx
import structlog
from pydantic import BaseModel, ConfigDict

from bus.clock import Clock, SystemClock
from bus.config import Credentials
from bus.errors import (
    BadRequest,
    BusError,
    FieldError,
    Unauthenticated,
    UpstreamBadResponse,
    UpstreamFault,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from bus.security import Consumer
from bus.upstream import raise_for_upstream_status, translate_http_error
from bus.upstream_auth import TokenProvider

__all__ = [
    "Adapter",
    "AdapterState",
    "BadRequest",
    "BusError",
    "CallbackReply",
    "CallbackSpec",
    "Clock",
    "Consumer",
    "Context",
    "Credentials",
    "Event",
    "FieldError",
    "Inbound",
    "NoOptions",
    "OperationSpec",
    "Resources",
    "SystemClock",
    "TokenProvider",
    "Unauthenticated",
    "Upstream",
    "UpstreamBadResponse",
    "UpstreamFault",
    "UpstreamRejected",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "callback",
    "operation",
    "raise_for_upstream_status",
    "translate_http_error",
]


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where the service's national platform is, as declared in bus.yaml."""

    base_url: str
    timeout: float
    connect_timeout: float
    #: Per-request timeouts to pass to ``ctx.http`` calls (the deadline still covers all).
    http_timeout: httpx.Timeout = field(init=False)

    def __post_init__(self) -> None:
        timeout = httpx.Timeout(self.timeout, connect=self.connect_timeout)
        object.__setattr__(self, "http_timeout", timeout)


class AdapterState(Protocol):
    """A small durable key-value store the bus lends each service (its own namespace), for
    what an adapter must remember between an operation and a later callback: which consumer
    created a payment, say. Values are short JSON texts; never put personal data in keys."""

    async def get(self, key: str) -> str | None: ...
    async def put(self, key: str, value: str) -> None: ...
    async def put_new(self, key: str, value: str) -> bool:
        """Store ``value`` only if ``key`` holds nothing yet (atomically); whether it did."""
        ...


@dataclass(frozen=True, slots=True)
class Resources:
    """What the bus lends an adapter for its whole life (given to :meth:`Adapter.start`)."""

    service: str
    http: httpx.AsyncClient
    upstream: Upstream | None
    credentials: Credentials
    clock: Clock
    log: structlog.typing.FilteringBoundLogger
    #: Keyed digest (HMAC-SHA256, hex) of raw upstream bytes for the exchange record. Keyed,
    #: because a plain hash of a request whose only unknown is a personal id can be reversed.
    digest: Callable[[bytes], str]
    #: The service's durable key-value store (see :class:`AdapterState`).
    state: AdapterState


@dataclass(frozen=True, slots=True)
class Context:
    """What one call of an operation receives besides its input."""

    request_id: str
    service: str
    operation: str
    consumer: Consumer
    resources: Resources
    #: Digests of raw upstream exchanges (e.g. SOAP envelopes), for the exchange record. An
    #: adapter appends one mapping per upstream message pair; never the content itself.
    upstream_exchanges: list[dict[str, Any]] = field(default_factory=list)
    #: The key an upstream that de-duplicates writes must receive (its own idempotency field or
    #: header): the caller's ``Idempotency-Key``, or for a store-and-forward delivery the
    #: delivery id, the same on every redelivery. None when the call carries neither.
    idempotency_key: str | None = None
    #: The delivery id when this call is a store-and-forward delivery attempt.
    delivery_id: str | None = None
    #: The officer on whose behalf the consumer calls (``X-User-Id``): an adapter passes it
    #: on where the upstream protocol has a field for it (the population database's MaCanBo).
    end_user: str | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        """The bus's shared, long-lived HTTP client."""
        return self.resources.http

    @property
    def upstream(self) -> Upstream:
        """The upstream of this service; configuration guarantees it for adapters that need it."""
        if self.resources.upstream is None:
            raise UpstreamUnavailable(f"service {self.service!r} has no upstream configured")
        return self.resources.upstream

    @property
    def credentials(self) -> Credentials:
        return self.resources.credentials

    @property
    def clock(self) -> Clock:
        return self.resources.clock

    @property
    def log(self) -> structlog.typing.FilteringBoundLogger:
        return self.resources.log

    @property
    def state(self) -> AdapterState:
        return self.resources.state

    def note_exchange(self, message: str, sent: bytes, reply: httpx.Response) -> None:
        """Add one upstream message pair to the exchange record: keyed digests and sizes of the
        exact bytes, the HTTP status; never the content."""
        self.upstream_exchanges.append(
            {
                "message": message,
                "request_hmac": self.resources.digest(sent),
                "request_bytes": len(sent),
                "reply_hmac": self.resources.digest(reply.content),
                "reply_bytes": len(reply.content),
                "http_status": reply.status_code,
            }
        )


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """One named operation of an adapter, as the catalogue and the OpenAPI document show it."""

    name: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    description: str
    idempotent: bool
    attribute: str
    #: "async": store-and-forward; the caller gets 202 and a delivery id (bus.yaml may force it).
    mode: Literal["sync", "async"] = "sync"
    #: Input field whose value orders deliveries: messages with the same value arrive in order.
    order_by: str | None = None
    #: The adapter passes ``ctx.idempotency_key`` to an upstream that de-duplicates by it, so a
    #: non-idempotent write that carries a key may be retried.
    honours_idempotency_key: bool = False

    def bind(self, adapter: Adapter) -> Callable[[BaseModel, Context], Awaitable[BaseModel]]:
        handler: Callable[[BaseModel, Context], Awaitable[BaseModel]] = getattr(
            adapter, self.attribute
        )
        return handler


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message a platform sent to the bus at ``POST /v1/callbacks/{service}``, as received."""

    body: bytes
    #: Header names in lower case.
    headers: Mapping[str, str]
    #: The peer's address, when known.
    client: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A canonical event for one consumer, delivered to the webhook it registered, through the
    store-and-forward queue.

    ``key`` names the fact (a payment reference): one service's event of one ``type`` and
    ``key`` is queued once, however often the platform repeats the message that carries it.
    """

    type: str
    consumer: str
    key: str
    data: BaseModel
    #: Events sharing an order key reach the consumer in the order they were queued.
    order_key: str | None = None


@dataclass(frozen=True, slots=True)
class CallbackReply:
    """The adapter's verdict on an inbound message: what to answer the platform, in the
    platform's own terms, and which events the bus must deliver."""

    body: Mapping[str, Any]
    status: int = 200
    events: tuple[Event, ...] = ()
    #: Why the message was refused (a wrong checksum, an unknown reference): recorded as the
    #: exchange's error while ``body`` answers the platform.
    refused: BusError | None = None
    #: A reference without personal data for the exchange record (a payment reference).
    reference: str | None = None
    #: What the exchange record keeps of the inbound body when it must not keep it as received
    #: (the tax link's shared key removed); None: the body as received.
    recorded_body: bytes | None = None


@dataclass(frozen=True, slots=True)
class CallbackSpec:
    """An adapter's inbound handler and the events it may emit (type -> payload model)."""

    attribute: str
    description: str
    events: Mapping[str, type[BaseModel]]

    def bind(self, adapter: Adapter) -> Callable[[Inbound, Context], Awaitable[CallbackReply]]:
        handler: Callable[[Inbound, Context], Awaitable[CallbackReply]] = getattr(
            adapter, self.attribute
        )
        return handler


_CALLBACK_ATTRIBUTE = "__lgsp_callback__"


def callback(
    *, events: Mapping[str, type[BaseModel]], description: str | None = None
) -> Callable[
    [Callable[[AdapterT, Inbound, Context], Awaitable[CallbackReply]]],
    Callable[[AdapterT, Inbound, Context], Awaitable[CallbackReply]],
]:
    """Declare an adapter method as the service's inbound handler, reached by the platform at
    ``POST /v1/callbacks/{service}``.

    The method verifies the message (checksum, shared key) itself, since only the adapter
    knows the platform's scheme, and returns a :class:`CallbackReply`. The bus records the
    exchange (``kind="callback"``), queues the reply's events durably (each one once, see
    :class:`Event`) before answering, and answers 503 when it cannot, so that the platform
    sends the message again. ``events`` lists the event types and their payload models.
    """

    def mark(
        fn: Callable[[AdapterT, Inbound, Context], Awaitable[CallbackReply]],
    ) -> Callable[[AdapterT, Inbound, Context], Awaitable[CallbackReply]]:
        doc = (fn.__doc__ or "").strip().splitlines()
        spec = CallbackSpec(
            attribute=fn.__name__,
            description=description if description is not None else (doc[0] if doc else ""),
            events=dict(events),
        )
        setattr(fn, _CALLBACK_ATTRIBUTE, spec)
        return fn

    return mark


class NoOptions(BaseModel):
    """Options model of an adapter that takes none: any key under ``options`` is refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


AdapterT = TypeVar("AdapterT", bound="Adapter")
InT = TypeVar("InT", bound=BaseModel)
OutT = TypeVar("OutT", bound=BaseModel)
_SPEC_ATTRIBUTE = "__lgsp_operation__"


def operation(
    name: str,
    *,
    input: type[InT],  # shadows the builtin on purpose: operation(name, input=.., output=..)
    output: type[OutT],
    description: str | None = None,
    idempotent: bool = True,
    mode: Literal["sync", "async"] = "sync",
    order_by: str | None = None,
    honours_idempotency_key: bool = False,
) -> Callable[
    [Callable[[AdapterT, InT, Context], Awaitable[OutT]]],
    Callable[[AdapterT, InT, Context], Awaitable[OutT]],
]:
    """Declare an adapter method as the operation ``name`` with its input and output models.

    ``idempotent=False`` marks a write: it is retried only when the call carries an idempotency
    key and ``honours_idempotency_key=True`` says the adapter hands that key to an upstream that
    de-duplicates by it. ``mode="async"`` makes the operation store-and-forward: the bus queues
    the validated input, answers 202 with a delivery id and delivers it with long-horizon
    retries; ``order_by`` names the input field (e.g. a dossier code) whose messages must arrive
    in order. The description defaults to the first line of the method's docstring.
    """
    if mode == "async" and not (idempotent or honours_idempotency_key):
        raise TypeError(
            f"operation {name!r}: a store-and-forward write may be delivered twice (after a "
            "crash or an ambiguous failure); declare honours_idempotency_key=True and send "
            "ctx.idempotency_key upstream"
        )
    if order_by is not None and order_by not in input.model_fields:
        raise TypeError(f"operation {name!r}: order_by={order_by!r} is not a field of {input}")

    def mark(
        fn: Callable[[AdapterT, InT, Context], Awaitable[OutT]],
    ) -> Callable[[AdapterT, InT, Context], Awaitable[OutT]]:
        doc = (fn.__doc__ or "").strip().splitlines()
        spec = OperationSpec(
            name=name,
            input_model=input,
            output_model=output,
            description=description if description is not None else (doc[0] if doc else ""),
            idempotent=idempotent,
            attribute=fn.__name__,
            mode=mode,
            order_by=order_by,
            honours_idempotency_key=honours_idempotency_key,
        )
        setattr(fn, _SPEC_ATTRIBUTE, spec)
        return fn

    return mark


class Adapter:
    """Base class of every adapter. Subclasses declare operations with :func:`operation`.

    ``Options`` is the pydantic model of the service's ``options:`` block in bus.yaml; the bus
    validates it at start-up and passes the instance to ``__init__``.
    """

    description: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: Whether a service using this adapter must declare an ``upstream:`` in bus.yaml.
    requires_upstream: ClassVar[bool] = True
    operations: ClassVar[Mapping[str, OperationSpec]] = {}
    #: The inbound handler declared with :func:`callback`, if the platform calls the bus.
    inbound_spec: ClassVar[CallbackSpec | None] = None

    def __init__(self, options: BaseModel) -> None:
        self.options = options

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, OperationSpec] = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                spec = getattr(attr, _SPEC_ATTRIBUTE, None)
                if not isinstance(spec, OperationSpec):
                    continue
                other = found.get(spec.name)
                if other is not None and other.attribute != spec.attribute:
                    raise TypeError(
                        f"{cls.__qualname__}: operation {spec.name!r} is declared by both "
                        f"{other.attribute}() and {spec.attribute}()"
                    )
                found[spec.name] = spec
        cls.operations = found
        inbound: dict[str, CallbackSpec] = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                handler = getattr(attr, _CALLBACK_ATTRIBUTE, None)
                if isinstance(handler, CallbackSpec):
                    inbound[handler.attribute] = handler
        if len(inbound) > 1:
            raise TypeError(
                f"{cls.__qualname__}: one callback handler per adapter, found "
                f"{', '.join(sorted(inbound))}"
            )
        if not isinstance(vars(cls).get("inbound_spec"), CallbackSpec | None):
            raise TypeError(f"{cls.__qualname__}: inbound_spec is the bus's; name it otherwise")
        cls.inbound_spec = next(iter(inbound.values()), None)
        spec = cls.inbound_spec
        clash = set(spec.events) & set(found) if spec is not None else set()
        if clash:
            raise TypeError(
                f"{cls.__qualname__}: {', '.join(sorted(clash))} is both an operation and an "
                "event type"
            )

    async def start(self, resources: Resources) -> None:
        """Called once when the gateway starts: load WSDLs, warm caches. Default: nothing."""

    async def stop(self) -> None:
        """Called once when the gateway stops. Default: nothing."""
