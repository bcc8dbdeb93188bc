"""The portal mock's memory: login sessions on an injected clock, stored dossiers with their
processing history, and counters. Pure logic, no HTTP: tests step the clock."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from mocks.dvcqg._wire import (
    ALREADY_EXISTS,
    NOT_FOUND,
    TRANSITION_REFUSED,
    PortalError,
)
from schemas.dossier import transition_allowed

__all__ = ["Clock", "Portal", "SessionStore", "Stats", "StoredDossier"]

#: Seconds on a monotonic scale, any origin.
Clock = Callable[[], float]


class SessionStore:
    """Opaque sessions, each valid for ``lifetime`` seconds from the login that opened it."""

    def __init__(self, lifetime: float, clock: Clock) -> None:
        self._lifetime = lifetime
        self._clock = clock
        self._sessions: dict[str, tuple[str, float]] = {}  # session -> (username, expires at)

    def open(self, username: str) -> str:
        now = self._clock()
        self._sessions = {s: v for s, v in self._sessions.items() if v[1] > now}
        session = secrets.token_urlsafe(24)
        self._sessions[session] = (username, now + self._lifetime)
        return session

    def owner(self, session: str) -> str | None:
        """The account of ``session``; None when it is unknown or has expired."""
        held = self._sessions.get(session)
        if held is None:
            return None
        if held[1] <= self._clock():
            del self._sessions[session]
            return None
        return held[0]

    def expire_all(self) -> int:
        count = len(self._sessions)
        self._sessions.clear()
        return count

    def __len__(self) -> int:
        return len(self._sessions)


@dataclass(frozen=True)
class StoredDossier:
    record: dict[str, Any]
    history: tuple[dict[str, Any], ...] = ()
    updates: int = 0

    @property
    def status(self) -> str:
        status: str = self.record["TrangThaiHoSo"]
        return status


def _check_transition(code: str, current: str, new: str) -> None:
    if not transition_allowed(int(current), int(new)):
        raise PortalError(
            TRANSITION_REFUSED,
            f"Hồ sơ {code}: không thể chuyển trạng thái từ {current} sang {new}",
        )


def _not_found(code: str) -> PortalError:
    return PortalError(NOT_FOUND, f"Không tìm thấy hồ sơ {code}")


@dataclass
class Portal:
    """Stored dossiers by MaHoSo. A call's records apply all together or not at all."""

    dossiers: dict[str, StoredDossier] = field(default_factory=dict)

    def sync(self, records: list[dict[str, Any]], updating: bool) -> list[dict[str, Any]]:
        """DongBoHoSoMC: create (``updating`` false) or replace (true) each dossier."""
        staged: dict[str, StoredDossier] = {}
        for record in records:
            code = record["MaHoSo"]
            current = staged.get(code) or self.dossiers.get(code)
            if not updating:
                if current is not None:
                    raise PortalError(ALREADY_EXISTS, f"Hồ sơ {code} đã tồn tại trên hệ thống")
                staged[code] = StoredDossier(record)
                continue
            if current is None:
                raise _not_found(code)
            _check_transition(code, current.status, record["TrangThaiHoSo"])
            staged[code] = replace(current, record=record, updates=current.updates + 1)
        self.dossiers.update(staged)
        return [{"MaHoSo": c, "TrangThaiHoSo": d.status} for c, d in staged.items()]

    def progress(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """CapNhatTienDoHoSoMC: move each dossier to TrangThai and append the record to its
        history, unless the very same record is there already (a re-sent update)."""
        staged: dict[str, StoredDossier] = {}
        for record in records:
            code = record["MaHoSo"]
            current = staged.get(code) or self.dossiers.get(code)
            if current is None:
                raise _not_found(code)
            _check_transition(code, current.status, record["TrangThai"])
            history = current.history
            if record not in history:
                history = (*history, record)
            staged[code] = replace(
                current,
                record={**current.record, "TrangThaiHoSo": record["TrangThai"]},
                history=history,
            )
        self.dossiers.update(staged)
        return [{"MaHoSo": c, "TrangThaiHoSo": d.status} for c, d in staged.items()]

    def get(self, code: str) -> StoredDossier:
        stored = self.dossiers.get(code)
        if stored is None:
            raise _not_found(code)
        return stored


@dataclass
class Stats:
    """What ``GET /__admin/stats`` reports."""

    logins: int = 0
    failed_logins: int = 0
    calls: Counter[str] = field(default_factory=Counter)  # per service, refused ones included
    errors: Counter[str] = field(default_factory=Counter)  # per error_code of /api replies
