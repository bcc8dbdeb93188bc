"""The document axis mock's memory: sent documents, each recipient's copy and its status.

Pure logic, no HTTP; times are given by the caller (the app's clock).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: Status codes PLATFORMS.md documents; 07-12 and 14 exist on the axis with unknown meanings.
STATUS_CODES = frozenset({"01", "02", "03", "04", "05", "06", "13", "15", "16"})
ARRIVED = "01"
RECALL = "13"
#: What a recipient may set (01 is the axis's own; 13 is the sender's recall request).
RECIPIENT_CODES = STATUS_CODES - {ARRIVED, RECALL}


@dataclass
class Copy:
    """One recipient's copy of a document and where it stands."""

    organ_id: str
    received_at: datetime
    status: str = ARRIVED
    updated_at: datetime | None = None
    description: str | None = None
    staff: dict[str, str] | None = None


@dataclass
class Stored:
    """A document the axis accepted."""

    doc_id: str
    system: str
    sender: str
    sender_name: str
    document_id: str
    code_number: str
    code_notation: str
    subject: str
    promulgation_date: str
    data: bytes
    sent_at: datetime
    copies: dict[str, Copy] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def received_entry(self, organ_id: str) -> dict[str, Any]:
        copy = self.copies[organ_id]
        return {
            "DocId": self.doc_id,
            "DocumentId": self.document_id,
            "From": self.sender,
            "FromName": self.sender_name,
            "CodeNumber": self.code_number,
            "CodeNotation": self.code_notation,
            "Subject": self.subject,
            "PromulgationDate": self.promulgation_date,
            "Status": copy.status,
            "ReceivedAt": copy.received_at.isoformat(),
        }

    def sent_entry(self, names: dict[str, str]) -> dict[str, Any]:
        return {
            "DocId": self.doc_id,
            "DocumentId": self.document_id,
            "CodeNumber": self.code_number,
            "CodeNotation": self.code_notation,
            "Subject": self.subject,
            "PromulgationDate": self.promulgation_date,
            "SentAt": self.sent_at.isoformat(),
            "To": [
                {
                    "OrganId": copy.organ_id,
                    "OrganName": names.get(copy.organ_id, ""),
                    "Status": copy.status,
                    "Description": copy.description,
                    "UpdatedAt": copy.updated_at.isoformat() if copy.updated_at else None,
                }
                for copy in self.copies.values()
            ],
        }

    def admin_entry(self) -> dict[str, Any]:
        """What ``/__admin/documents`` shows: ids, parties, statuses, size; never content."""
        return {
            "DocId": self.doc_id,
            "DocumentId": self.document_id,
            "System": self.system,
            "From": self.sender,
            "To": [{"OrganId": c.organ_id, "Status": c.status} for c in self.copies.values()],
            "Bytes": len(self.data),
            "Sha256": self.sha256,
            "SentAt": self.sent_at.isoformat(),
        }


class DocumentStore:
    """Accepted documents by DocId, de-duplicated by (sender, DocumentId)."""

    def __init__(self) -> None:
        self.documents: dict[str, Stored] = {}
        self._by_sender: dict[tuple[str, str], str] = {}
        self.deliveries = 0  # recipient copies made, duplicates not counted

    def add(self, draft: Stored, recipients: list[str], now: datetime) -> tuple[Stored, bool]:
        """The stored document and True, or the one already sent by the same sender with the
        same DocumentId and False (nothing is delivered again)."""
        key = (draft.sender, draft.document_id)
        existing = self._by_sender.get(key)
        if existing is not None:
            return self.documents[existing], False
        draft.doc_id = str(uuid.uuid4())
        for organ in recipients:
            draft.copies[organ] = Copy(organ_id=organ, received_at=now)
            self.deliveries += 1
        self.documents[draft.doc_id] = draft
        self._by_sender[key] = draft.doc_id
        return draft, True

    def received(self, organ_id: str) -> list[Stored]:
        """Documents ``organ_id`` received, oldest first."""
        return [d for d in self.documents.values() if organ_id in d.copies]

    def sent(self, organ_id: str) -> list[Stored]:
        return [d for d in self.documents.values() if d.sender == organ_id]

    def visible(self, doc_id: str, organ_id: str) -> Stored | None:
        """The document if ``organ_id`` sent or received it; None otherwise (an organ learns
        nothing of other organs' documents, not even that they exist)."""
        doc = self.documents.get(doc_id)
        if doc is None or (doc.sender != organ_id and organ_id not in doc.copies):
            return None
        return doc
