"""The PayGov mock's memory: payments, and the confirmation callbacks with their retries."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from adapters.payment.checksum import (
    CALLBACK_FIELDS,
    CALLBACK_REPLY_FIELDS,
    Algorithm,
    sign,
    verify,
)
from adapters.wire import to_wire_time
from mocks.paygov._messages import InitMessage, ReceiptInfo

__all__ = [
    "Attempt",
    "CallbackSender",
    "Payment",
    "PaymentStore",
    "State",
    "stamp",
]

_log = logging.getLogger("mocks.paygov")

#: Asia/Ho_Chi_Minh: UTC+7 all year round (no DST), so no tz database is needed.
State = Literal["pending", "paid", "failed"]
Sleep = Callable[[float], Awaitable[None]]
#: What a repeated INIT must match for it to be the same payment (else error "02").
SUBSTANCE = ("SoTien", "MaTienTe", "LoaiHinhThanhToan", "ThongTinGiaoDich", "ThongTinBienLai")


def stamp(moment: datetime | None = None) -> str:
    """``yyyyMMddHHmmss`` in Vietnam's time; now if no moment is given."""
    return to_wire_time(moment or datetime.now(UTC))


@dataclass
class Payment:
    partner: str  # MaDoiTac
    reference: str  # MaThamChieu
    transaction_id: str  # MaGiaoDich, PayGov's own
    page_id: str  # the opaque id in UrlThanhToan
    init: InitMessage
    created_at: str
    state: State = "pending"
    bank: str = ""  # MaNganHang: the INIT's, then the one that paid
    completed_at: str | None = None  # ThoiGianGD of completion
    callback_attempts: int = 0

    @property
    def amount(self) -> int:
        return self.init.SoTien

    @property
    def receipt(self) -> ReceiptInfo:
        return self.init.ThongTinBienLai

    def differences(self, other: InitMessage) -> list[str]:
        """The fields of ``SUBSTANCE`` in which ``other`` differs from this payment's INIT."""
        return [name for name in SUBSTANCE if getattr(self.init, name) != getattr(other, name)]

    def as_json(self, base_url: str) -> dict[str, Any]:
        return {
            "MaDoiTac": self.partner,
            "MaThamChieu": self.reference,
            "MaGiaoDich": self.transaction_id,
            "SoTien": self.amount,
            "MaTienTe": self.init.MaTienTe,
            "state": self.state,
            "MaNganHang": self.bank,
            "created_at": self.created_at,
            "ThoiGianGD": self.completed_at,
            "UrlThanhToan": f"{base_url}/pay/{self.page_id}",
            "callback_attempts": self.callback_attempts,
        }


class PaymentStore:
    """Payments by (MaDoiTac, MaThamChieu) and by page id."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], Payment] = {}
        self._by_page: dict[str, Payment] = {}
        self._numbers = itertools.count(1)

    def get(self, partner: str, reference: str) -> Payment | None:
        return self._by_key.get((partner, reference))

    def by_page(self, page_id: str) -> Payment | None:
        return self._by_page.get(page_id)

    def find(self, reference: str, partner: str | None = None) -> list[Payment]:
        return [
            p
            for p in self._by_key.values()
            if p.reference == reference and partner in (None, p.partner)
        ]

    def all(self) -> list[Payment]:
        return list(self._by_key.values())

    def add(self, init: InitMessage) -> Payment:
        now = stamp()
        payment = Payment(
            partner=init.MaDoiTac,
            reference=init.MaThamChieu,
            transaction_id=f"PG{now[:8]}{next(self._numbers):08d}",
            page_id=secrets.token_urlsafe(16),
            init=init,
            created_at=now,
            bank=init.MaNganHang or "",
        )
        self._by_key[(payment.partner, payment.reference)] = payment
        self._by_page[payment.page_id] = payment
        return payment


@dataclass(frozen=True)
class Attempt:
    """One callback sent, as ``GET /__admin/callbacks`` lists it."""

    reference: str
    partner: str
    attempt: int  # 1 for the first callback of a payment, counting resends too
    resend: bool
    url: str
    http_status: int | None = None
    error: str | None = None  # the exception class, or why the reply is not an acknowledgement
    partner_code: str | None = None  # the MaLoi of the partner's reply
    acknowledged: bool = False

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CallbackSender:
    """Sends confirmations to partners, each in a background task owned by the app.

    ``client`` is set by the app's lifespan; ``join()`` waits for every task in flight (tests),
    ``close()`` cancels them (shutdown).
    """

    secrets_by_partner: Mapping[str, str]
    callback_urls: dict[str, str | None]
    algorithm: Algorithm
    backoff: Sequence[float]
    timeout: float
    sleep: Sleep
    client: httpx.AsyncClient | None = None
    attempts: list[Attempt] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def message(self, payment: Payment) -> dict[str, Any]:
        """The confirmation callback for a completed payment."""
        message: dict[str, Any] = {
            "LoaiBanTin": "NOTIFY",
            "MaLoi": "00" if payment.state == "paid" else "01",
            "MaDoiTac": payment.partner,
            "MaThamChieu": payment.reference,
            "SoTien": payment.amount,
            "MaTienTe": payment.init.MaTienTe,
            "MaGiaoDich": payment.transaction_id,
            "MaNganHang": payment.bank,
            "ThoiGianGD": payment.completed_at,
            "ThongTinGiaoDich": payment.init.ThongTinGiaoDich,
        }
        secret = self.secrets_by_partner[payment.partner]
        message["MaXacThuc"] = sign(message, CALLBACK_FIELDS, secret, self.algorithm)
        return message

    def start(self, payment: Payment) -> bool:
        """Deliver ``payment``'s confirmation in the background, with retries; ``False`` when
        its partner has no callback URL."""
        if not self.callback_urls.get(payment.partner):
            return False
        task = asyncio.get_running_loop().create_task(self._deliver(payment))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return True

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("paygov callback task failed: error=%s", type(exc).__name__)

    async def _deliver(self, payment: Payment) -> None:
        for number in range(len(self.backoff) + 1):
            if number:
                await self.sleep(self.backoff[number - 1])
            attempt = await self.send_once(payment)
            if attempt is None or attempt.acknowledged:
                return
        _log.warning(
            "paygov callback given up: partner=%s reference=%s attempts=%d",
            payment.partner,
            payment.reference,
            len(self.backoff) + 1,
        )

    async def send_once(self, payment: Payment, *, resend: bool = False) -> Attempt | None:
        """Send the confirmation once and record the attempt; ``None`` if the partner has no
        callback URL (any more)."""
        url = self.callback_urls.get(payment.partner)
        if not url:
            return None
        if self.client is None:
            raise RuntimeError("the PayGov mock's lifespan is not running: no callback client")
        payment.callback_attempts += 1
        message = self.message(payment)
        base = Attempt(payment.reference, payment.partner, payment.callback_attempts, resend, url)
        try:
            reply = await self.client.post(url, json=message, timeout=self.timeout)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            attempt = replace(base, error=type(exc).__name__)
        else:
            attempt = self._judge(base, reply, message)
        self.attempts.append(attempt)
        if not attempt.acknowledged:
            _log.info(
                "paygov callback not acknowledged: reference=%s attempt=%d status=%s error=%s",
                attempt.reference,
                attempt.attempt,
                attempt.http_status,
                attempt.error,
            )
        return attempt

    def _judge(self, base: Attempt, reply: httpx.Response, sent: Mapping[str, Any]) -> Attempt:
        """An acknowledgement is a 2xx JSON reply with MaLoi "00" and a right MaXacThuc."""
        status = reply.status_code
        try:
            body = reply.json()
        except ValueError:
            return replace(base, http_status=status, error="reply is not JSON")
        if not isinstance(body, dict):
            return replace(base, http_status=status, error="reply is not a JSON object")
        code = body.get("MaLoi")
        code = code if isinstance(code, str) else None
        error = None
        secret = self.secrets_by_partner[base.partner]
        if not 200 <= status < 300:
            error = f"HTTP {status}"
        elif code != "00":
            error = f"MaLoi {code}"
        elif not verify(body, CALLBACK_REPLY_FIELDS, secret, self.algorithm):
            error = "reply MaXacThuc is wrong"
        elif (
            body.get("MaDoiTac") != sent["MaDoiTac"]
            or body.get("MaThamChieu") != sent["MaThamChieu"]
        ):
            error = "reply is for another partner or reference"
        return replace(
            base, http_status=status, partner_code=code, error=error, acknowledged=not error
        )

    async def join(self) -> None:
        """Wait until no callback is in flight (a task's failure is raised here)."""
        while self._tasks:
            await asyncio.gather(*self._tasks)

    async def close(self) -> None:
        """Cancel every callback in flight and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
