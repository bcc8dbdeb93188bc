"""The base of canonical models: unknown fields are refused, text is stripped; and the marker
of fields that identify a citizen (:class:`Subject`), which the exchange log turns into blind
indexes instead of storing."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from datetime import datetime
from functools import cache
from typing import Annotated, Any, Union

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict

__all__ = [
    "MAX_STRING",
    "CanonicalModel",
    "CitizenRef",
    "Instant",
    "Subject",
    "check_year",
    "subjects_of",
]

#: Default longest string in a canonical model (characters).
MAX_STRING = 10_000


class CanonicalModel(BaseModel):
    """Base class for operation inputs and outputs.

    Unknown fields are refused (a misspelt field must not be silently ignored), surrounding
    whitespace is stripped from text, and no string may be longer than ``MAX_STRING`` unless a
    model says otherwise (a document with attachments, say).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, str_max_length=MAX_STRING)


def check_year(value: datetime) -> datetime:
    """Refuse a time outside 1900-2200: no platform means it, and converting one near the ends
    of the calendar to another offset would overflow."""
    if not 1900 <= value.year <= 2200:
        raise ValueError("must be a time between the years 1900 and 2200")
    return value


#: A moment with its UTC offset (naive refused), between 1900 and 2200.
Instant = Annotated[AwareDatetime, AfterValidator(check_year)]


class Subject:
    """Marks a field (in ``Annotated[...]``) whose value identifies a citizen: a personal id
    number or an old id card number. The exchange log finds exchanges by it through a keyed
    blind index and never stores it in clear."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Subject()"


#: A citizen's id in an output model (already checked by the upstream): marked, not validated.
CitizenRef = Annotated[str, Subject()]


def _marked(annotation: Any) -> bool:
    """Whether ``annotation`` is a Subject-marked type, or a union/list/tuple holding one."""
    if typing.get_origin(annotation) is Annotated:
        if any(isinstance(m, Subject) for m in annotation.__metadata__):
            return True
        return _marked(typing.get_args(annotation)[0])
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType, list, tuple, set, frozenset):
        return any(_marked(arg) for arg in typing.get_args(annotation))
    return False


@cache
def _subject_fields(model: type[BaseModel]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(fields holding citizen ids, other fields) of a model class."""
    marked, other = [], []
    for name, info in model.model_fields.items():
        if any(isinstance(m, Subject) for m in info.metadata) or _marked(info.annotation):
            marked.append(name)
        else:
            other.append(name)
    return tuple(marked), tuple(other)


def _values(value: Any) -> Iterator[Any]:
    if isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _values(item)
    elif value is not None:
        yield value


#: What :func:`subjects_of` looks into: models, and collections that may hold models.
_CONTAINERS = (BaseModel, list, tuple, set, frozenset, dict)


def subjects_of(value: Any) -> set[str]:
    """Every citizen id held in ``value`` (a model, or lists and dicts of models), by the
    :class:`Subject` marks of its models' fields."""
    found: set[str] = set()
    if isinstance(value, BaseModel):
        marked, other = _subject_fields(type(value))
        for name in marked:
            found.update(str(v) for v in _values(getattr(value, name)))
        for name in other:
            field = getattr(value, name)
            if isinstance(field, _CONTAINERS):  # a plain value holds no marked field
                found |= subjects_of(field)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            found |= subjects_of(item)
    elif isinstance(value, dict):
        for item in value.values():
            found |= subjects_of(item)
    return found
