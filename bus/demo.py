"""``lgsp demo``: the land-change registration a province handles every day, end to end.

Everything runs in this process on loopback, on the embedded default (SQLite files in a
temporary directory): the six national platform mocks, the bus, and a one-stop-shop webhook
that checks the bus's signatures. The story, one printed line per step:

 1. the officer looks the citizen up in the population database and verifies their facts;
 2. the new dossier is synced to the National Public Service Portal (status 2, then 4);
 3. the tax authority pushes its notice of financial obligation: the bus turns it into
    ``tax.notice`` for the one-stop-shop's webhook, and the dossier moves to status 6;
 4. the citizen pays on PayGov; the confirmation comes back to the bus and reaches the webhook
    as ``payment.confirmed``; the voucher goes back to the tax authority;
 5. the dossier is processed (9) and its result returned (10);
 6. the decision is sent to another agency as an edXML document over the document axis;
 7. an auditor reads the exchange log of the whole story and verifies its chain.

A step that fails prints why, and the demo exits non-zero. The consumer calls the bus as a real
one does: with its API key over HTTP, carrying the officer's ``X-User-Id``.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from bus.audit.auditors import Auditors
from bus.errors import BusError
from bus.loopback import WebhookInbox, serving
from bus.security.consumers import Consumers
from bus.security.store import SqliteConsumerStore
from bus.settings import Settings

__all__ = ["DemoFailed", "Story", "run_demo"]

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
CONSUMER = "motcua"  # the provincial one-stop-shop
OFFICER = "canbo.tn01"
SENDER = {"id": "000.00.00.G12", "name": "Sở Tài nguyên và Môi trường"}
RECIPIENT = {"id": "000.00.01.H12", "name": "Văn phòng đăng ký đất đai"}
#: The mocks' published demo credentials, as the bus reads them from its environment.
ENVIRON = {
    "NGSP_CONSUMER_KEY": "lgsp-demo-key",
    "NGSP_CONSUMER_SECRET": "lgsp-demo-secret",
    "PAYGOV_TOKEN": "paygov-demo-token",
    "PAYGOV_SECRET": "paygov-demo-secret",
    "DVCQG_USERNAME": "lgsp-demo",
    "DVCQG_PASSWORD": "dvcqg-demo-password",
    "EDOC_SECRET": "edoc-demo-secret",
    "TAX_SECURITY_KEY": "tax-demo-key",
}


class DemoFailed(Exception):
    """A step did not get what it expected; the message says why."""


def bus_yaml(urls: dict[str, str]) -> str:
    """The bus's configuration for the mocks at ``urls``."""
    return f"""\
version: 1
services:
  population:
    adapter: population
    upstream:
      base_url: {urls["ngsp"]}
      credentials: {{consumer_key: NGSP_CONSUMER_KEY, consumer_secret: NGSP_CONSUMER_SECRET}}
    timeout: 10
    audit: full
  paygov:
    adapter: paygov
    upstream:
      base_url: {urls["paygov"]}
      credentials: {{token: PAYGOV_TOKEN, secret: PAYGOV_SECRET}}
    timeout: 10
    audit: full
    options: {{partner_code: LGSP_DEMO}}
  dvcqg:
    adapter: dvcqg
    upstream:
      base_url: {urls["dvcqg"]}
      credentials: {{username: DVCQG_USERNAME, password: DVCQG_PASSWORD}}
    timeout: 10
    options: {{agency_code: "H12.01", dstcode: "H12"}}
  edoc:
    adapter: edoc
    upstream:
      base_url: {urls["edoc"]}
      credentials: {{secret: EDOC_SECRET}}
    timeout: 10
    options: {{system_id: lgsp-demo}}
  tax:
    adapter: tax
    upstream:
      base_url: {urls["tax"]}
      credentials: {{security_key: TAX_SECURITY_KEY}}
    timeout: 10
    audit: full
    options: {{notice_consumer: {CONSUMER}}}
"""


def masked(value: str) -> str:
    """An id shown as the demo may print it: first three and last two characters."""
    return value[:3] + "*" * max(0, len(value) - 5) + value[-2:]


@dataclass
class Story:
    """The land-change registration, step by step, against a running bus and mocks."""

    bus: httpx.AsyncClient  # carries the consumer's API key and the officer's X-User-Id
    mocks: dict[str, str]
    inbox: WebhookInbox
    auditor_key: str
    citizen: Any  # a seeded person of the population mock
    dossier: str = field(default_factory=lambda: f"H12.01-{date.today():%y%m%d}-0001")
    facts: dict[str, Any] = field(default_factory=dict)

    async def call(self, service: str, operation: str, body: dict[str, Any]) -> Any:
        reply = await self.bus.post(f"/v1/services/{service}/{operation}", json=body)
        envelope = reply.json()
        if envelope.get("status") != "ok":
            error = envelope.get("error") or {}
            raise DemoFailed(
                f"{service}/{operation} answered {reply.status_code} {error.get('code')}: "
                f"{error.get('message')} (request {envelope.get('request_id')})"
            )
        return envelope["data"]

    async def deliver(self, service: str, operation: str, body: dict[str, Any]) -> Any:
        """An async operation: queued (202), then followed until delivered."""
        accepted = await self.call(service, operation, body)
        url = accepted["status_url"]
        for _ in range(300):
            view = (await self.bus.get(url)).json()["data"]
            if view["state"] == "delivered":
                return view["result"]
            if view["state"] in ("dead", "discarded"):
                error = view["last_error"] or {}
                raise DemoFailed(
                    f"{service}/{operation} was not delivered: {error.get('code')}: "
                    f"{error.get('message')}"
                )
            await asyncio.sleep(0.05)
        raise DemoFailed(f"{service}/{operation} was still {view['state']} after 15 s")

    def now(self) -> str:
        return datetime.now(VIETNAM).isoformat(timespec="seconds")

    # -- the steps -------------------------------------------------------------------------

    async def look_up(self) -> str:
        person = self.citizen
        found = await self.call("population", "citizen.lookup", {"personal_id": person.id})
        if not found["found"]:
            raise DemoFailed("the seeded citizen was not found")
        verified = await self.call(
            "population",
            "citizen.verify",
            {
                "personal_id": person.id,
                "full_name": person.name.full,
                "birth_date": person.birth_date.isoformat(),
            },
        )
        if not verified["match"]:
            raise DemoFailed(f"the citizen's facts did not match: {verified}")
        return f"citizen {masked(person.id)} found; name and birth date verified"

    def _dossier(self, status: int) -> dict[str, Any]:
        person = self.citizen
        return {
            "code": self.dossier,
            "procedure_code": "1.004227",
            "procedure_name": "Đăng ký biến động quyền sử dụng đất, quyền sở hữu tài sản "
            "gắn liền với đất",
            "field_code": "DDAI",
            "field_name": "Đất đai",
            "channel": "online",
            "owner_name": person.name.full,
            "owner_id": person.id,
            "owner_kind": 1,
            "summary": "Đăng ký biến động do chuyển nhượng quyền sử dụng đất",
            "submitted_at": self.now(),
            "received_at": self.now(),
            "due_at": (datetime.now(VIETNAM) + timedelta(days=10)).isoformat(timespec="seconds"),
            "status": status,
            "agency_code": "G12.34",
        }

    async def progress(self, previous: int, status: int, note: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.deliver(
            "dvcqg",
            "dossier.progress",
            {
                "dossier_code": self.dossier,
                "officer_name": "Trần Thị Bình",
                "officer_title": "Chuyên viên",
                "at": self.now(),
                "department": "Bộ phận một cửa",
                "note": note,
                "previous_status": previous,
                "status": status,
            },
        )
        if result["status"] != status:
            raise DemoFailed(f"the portal holds status {result['status']}, not {status}")
        return result

    async def sync_dossier(self) -> str:
        synced = await self.deliver("dvcqg", "dossier.sync", self._dossier(2))
        await self.progress(2, 4, "Chuyển phòng chuyên môn xử lý")
        read = await self.call("dvcqg", "dossier.get", {"code": self.dossier})
        if read["status"] != 4:
            raise DemoFailed(f"the portal shows status {read['status']}, not 4")
        how = "created" if synced["created"] else "updated"
        return f"dossier {self.dossier} {how} on the national portal; status 2, then 4"

    async def tax_notice(self) -> str:
        notice = {
            "dossier_code": self.dossier,
            "items": [
                {
                    "tax_code": "8012345678",
                    "decision_no": "TB-2026-001",
                    "decision_date": date.today().isoformat(),
                    "item_name": "Lệ phí trước bạ nhà đất",
                    "amount": 1_250_000,
                },
                {
                    "tax_code": "8012345678",
                    "decision_no": "TB-2026-001",
                    "decision_date": date.today().isoformat(),
                    "item_name": "Thuế thu nhập cá nhân từ chuyển nhượng bất động sản",
                    "amount": 18_000_000,
                },
            ],
        }
        async with httpx.AsyncClient(base_url=self.mocks["tax"]) as tax:
            pushed = await tax.post("/__admin/notices", json=notice)
        if pushed.status_code != 200:
            raise DemoFailed(f"the bus refused the tax notice: {pushed.status_code} {pushed.text}")
        event = await self.inbox.wait_for("tax.notice")
        self.facts["tax_total"] = event.data["total"]
        self.facts["notice_no"] = event.data["items"][0]["decision_no"]
        await self.progress(4, 6, "Chuyển thông tin xác định nghĩa vụ tài chính")
        return (
            f"tax notice of {event.data['total']:,} VND delivered to the one-stop-shop's "
            "webhook (signed); dossier status 6"
        )

    async def pay(self) -> str:
        person = self.citizen
        total = self.facts["tax_total"]
        reference = f"LGSP-{secrets.token_hex(4).upper()}"
        created = await self.call(
            "paygov",
            "payment.create",
            {
                "reference": reference,
                "amount": total,
                "description": f"Nộp nghĩa vụ tài chính hồ sơ {self.dossier}",
                "dossier_code": self.dossier,
                "procedure_code": "1.004227",
                "payer": {"name": person.name.full, "id_number": person.id},
                "items": [{"description": "Nghĩa vụ tài chính về đất đai", "amount": total}],
            },
        )
        async with httpx.AsyncClient() as browser:
            page = await browser.get(created["payment_url"])
            paid = await browser.post(created["payment_url"] + "/complete")
        if page.status_code != 200 or paid.status_code != 200:
            raise DemoFailed(f"the PayGov page answered {page.status_code}/{paid.status_code}")
        event = await self.inbox.wait_for("payment.confirmed")
        if event.data["reference"] != reference or event.data["state"] != "paid":
            raise DemoFailed(f"unexpected confirmation: {event.data}")
        voucher = await self.call(
            "tax",
            "tax.voucher",
            {
                "dossier_code": self.dossier,
                "tax_code": "8012345678",
                "payer_name": person.name.full,
                "payer_id": person.id,
                "notice_no": self.facts["notice_no"],
                "description": "Nộp nghĩa vụ tài chính về đất đai",
                "paid_at": event.data["completed_at"],
                "amount": total,
            },
        )
        return (
            f"paid {total:,} VND on PayGov ({reference}); payment.confirmed delivered; "
            f"voucher {voucher['voucher_id']} sent to the tax authority"
        )

    async def finish(self) -> str:
        await self.progress(6, 9, "Đã xử lý xong, chờ trả kết quả")
        await self.progress(9, 10, "Đã trả kết quả cho công dân")
        return "dossier processed (status 9) and its result returned (status 10)"

    async def send_decision(self) -> str:
        decision = b"%PDF-1.4\n% Quyet dinh (demo)\n"
        receipt = await self.deliver(
            "edoc",
            "document.send",
            {
                "sender": SENDER,
                "recipients": [RECIPIENT],
                "code_number": "125",
                "code_notation": "QĐ-STNMT",
                "promulgation_place": "Tây Ninh",
                "promulgation_date": date.today().isoformat(),
                "document_type": "2",
                "document_type_name": "Quyết định",
                "subject": f"Quyết định công nhận biến động đất đai, hồ sơ {self.dossier}",
                "signer": {"position": "Giám đốc", "full_name": "Lê Văn Cường"},
                "attachments": [
                    {
                        "name": "quyet-dinh.pdf",
                        "content_type": "application/pdf",
                        "content": base64.b64encode(decision).decode(),
                    }
                ],
            },
        )
        inbox = await self.call("edoc", "document.inbox", {"organ_id": RECIPIENT["id"]})
        if not any(e["doc_id"] == receipt["doc_id"] for e in inbox["entries"]):
            raise DemoFailed("the decision is not in the recipient agency's inbox")
        return (
            f"decision sent as edXML to {RECIPIENT['name']} (DocId {receipt['doc_id']}); "
            "it is in their inbox"
        )


async def _audit(bus_url: str, key: str, out: Callable[[str], None]) -> str:
    """The exchange log of the story as an auditor reads it, then its verification."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=bus_url, headers=headers) as auditor:
        records: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"limit": "500", **({"cursor": cursor} if cursor else {})}
            page = (await auditor.get("/v1/audit/exchanges", params=params)).json()["data"]
            records += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        out("   the exchange log of the story, oldest first:")
        for record in sorted(records, key=lambda r: r["seq"]):
            when = datetime.fromisoformat(record["received_at"]).astimezone(VIETNAM)
            what = f"{record['service'] or '-'}/{record['operation'] or '-'}"
            out(
                f"   {record['seq']:>4}  {when:%H:%M:%S}  {record['kind']:<8} "
                f"{record['consumer']:<18} {what:<30} {record['outcome']:<5} "
                f"{record['http_status']}"
            )
        report = (await auditor.post("/v1/audit/verify")).json()["data"]
    if not report["ok"]:
        raise DemoFailed(f"the exchange log does not verify: {report['problem']}")
    head = report["head"] or {}
    return (
        f"exchange log verified by the auditor: {report['checked']} records, hash chain "
        f"intact, head signed at seq {head.get('seq')}"
    )


async def run_demo(out: Callable[[str], None], workdir: Path | None = None) -> int:
    """Play the story; 0 when every step passed, 1 at the first that failed."""
    from bus.app import create_app  # FastAPI and the adapters only when the demo runs
    from mocks.stack import MockStack

    with tempfile.TemporaryDirectory(prefix="lgsp-demo-") as scratch:
        work = workdir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        (work / "bus.yaml").write_text("version: 1\nservices: {}\n", encoding="utf-8")
        admin = secrets.token_urlsafe(24)
        settings = Settings(
            config=work / "bus.yaml",
            store_path=work / "lgsp.db",
            audit_path=work / "lgsp-audit.db",
            auth="required",
            admin_token=admin,
            log_level="error",
            log_format="console",
            delivery_poll_seconds=0.2,
        )
        step = 0

        def say(ok: bool, text: str) -> None:
            nonlocal step
            step += 1
            out(f"{'✓' if ok else '✗'} {step:>2}. {text}")

        async with AsyncExitStack() as running:
            stack = MockStack().start()
            running.callback(stack.stop)
            (work / "bus.yaml").write_text(bus_yaml(stack.urls), encoding="utf-8")
            store = SqliteConsumerStore(settings.store_path)
            consumers = Consumers(store)
            await consumers.create(
                CONSUMER,
                "Provincial one-stop-shop",
                agency="H12.01",
                rights=["population/*", "paygov/*", "dvcqg/*", "edoc/*", "tax/*"],
            )
            api_key, _ = await consumers.create_key(CONSUMER)
            await store.close()
            inbox = WebhookInbox()
            hook_url = await running.enter_async_context(serving(inbox.app))
            app = create_app(settings, environ=ENVIRON)
            bus_url = await running.enter_async_context(serving(app))
            async with httpx.AsyncClient(
                base_url=bus_url, headers={"Authorization": f"Bearer {admin}"}
            ) as operator:
                hook = (
                    await operator.put(
                        f"/v1/admin/consumers/{CONSUMER}/webhook",
                        json={"url": f"{hook_url}/events"},
                    )
                ).json()["data"]
                inbox.secret = hook["secret"]
                await operator.put(
                    f"{stack.urls['paygov']}/__admin/partners/LGSP_DEMO",
                    json={"callback_url": f"{bus_url}/v1/callbacks/paygov"},
                )
                await operator.put(
                    f"{stack.urls['tax']}/__admin/settings",
                    json={"notice_url": f"{bus_url}/v1/callbacks/tax"},
                )
            audit = app.state.gateway.audit
            _, auditor_key = await Auditors(audit.store).create("thanhtra", "Provincial inspector")
            say(True, f"bus on {bus_url}, six national platform mocks, one-stop-shop webhook")
            registry = stack.apps["population"].state.registry
            citizen = next(c for c in registry.citizens if c.birth_date_known)
            client = await running.enter_async_context(
                httpx.AsyncClient(
                    base_url=bus_url,
                    headers={"X-API-Key": api_key, "X-User-Id": OFFICER},
                    timeout=30,
                )
            )
            story = Story(client, stack.urls, inbox, auditor_key, citizen)
            steps: list[Callable[[], Awaitable[str]]] = [
                story.look_up,
                story.sync_dossier,
                story.tax_notice,
                story.pay,
                story.finish,
                story.send_decision,
                lambda: _audit(bus_url, auditor_key, out),
            ]
            for run in steps:
                try:
                    say(True, await run())
                except (DemoFailed, BusError, httpx.HTTPError, TimeoutError, KeyError) as exc:
                    reason = str(exc) or type(exc).__name__
                    say(False, f"{getattr(run, '__name__', 'step')}: {reason}")
                    return 1
    return 0
