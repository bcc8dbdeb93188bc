"""Canonical models shared by the bus, its adapters and its callers.

Every reply of the bus is an :class:`Envelope`; adapters' operation models live beside it, one
module per domain (citizen, dossier, payment, document) as the platforms arrive.
"""

from schemas.base import CanonicalModel
from schemas.envelope import Envelope, ErrorBody, FieldErrorBody, Status

__all__ = ["CanonicalModel", "Envelope", "ErrorBody", "FieldErrorBody", "Status"]
