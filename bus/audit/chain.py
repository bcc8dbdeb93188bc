"""Checking the hash chain: the same code checks the live store and an exported bundle.

The chain (:mod:`bus.audit.record`) makes every record depend on all before it; what pins the
*end* of the chain is the **signed head**: each append transaction signs ``{seq, hash}`` of the
last record with the bus's Ed25519 key, and at intervals that head is kept as a **checkpoint**.
Someone who can write the log file but does not hold the signing key can therefore not:

- change a record (its hash no longer follows, or the next record no longer links to it),
- delete one (a gap in the numbering, or a broken link),
- insert one (a record holding another position's data, or records beyond the signed head),
- reorder two (a position holding another record's data),
- cut the tail (the signed head names a record that is no longer there),

and :class:`ChainVerifier` names the first record at fault in each case. After a purge, the
chain starts at an **anchor**, the signed ``{seq, hash}`` of the last purged record.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import pydantic_core

from bus.audit.keys import verify_signature
from bus.audit.record import COLUMNS, GENESIS, canonical, chain_hash

__all__ = [
    "RECENT_WINDOW",
    "Anchor",
    "ChainVerifier",
    "Problem",
    "ProblemKind",
    "RangeOutcome",
    "SignedPoint",
    "StoredRecord",
    "VerifyReport",
    "combine_ranges",
]

ProblemKind = Literal["modified", "deleted", "inserted", "reordered", "truncated", "signature"]

_NAMES = tuple(COLUMNS)
assert _NAMES[0] == "id"  # a store's row: (seq, data, prev_hash, hash, id, *other columns)
#: How many recent records the verifier remembers (to name them, and to tell copies).
RECENT_WINDOW = 4096
#: What :meth:`ChainVerifier.feed_rows` reads of a record's data: its query columns, then
#: ``seq`` and ``subjects``, as they are (a missing one as None, as :meth:`~ChainVerifier.feed`
#: compares a column). The rest of the data is read through but not made into Python objects,
#: which costs about a third of a full parse. A record this does not read goes to
#: :meth:`~ChainVerifier.feed`, which parses it all and says what is wrong. Reading through is
#: laxer than feed()'s parse in three ways: feed_rows checks the UTF-8 itself; a value nested
#: deeper than 200 levels, or an integer of more than 4,300 digits, in a field it does not read
#: is let through. The bus writes neither (``canonical`` refuses such an integer; what it
#: records is a few levels deep): such a record was forged with its hash recomputed, and the
#: rewritten chain is reported at the first signed point after it, as any rewritten chain is.
_Checked = msgspec.defstruct(
    "_Checked", [(name, Any, None) for name in (*_NAMES, "seq", "subjects")]
)
_read_checked = msgspec.json.Decoder(_Checked).decode
_SEQ, _SUBJECTS = len(_NAMES), len(_NAMES) + 1  # after the columns: data[:_SEQ] are they


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as a store or a bundle holds it."""

    seq: int
    id: str
    data: bytes
    prev_hash: str
    hash: str
    #: The query columns as stored beside the data (checked against it); empty in a bundle.
    columns: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> StoredRecord:
        """A record as a store reads it: ``(seq, data, prev_hash, hash, *columns)``, the
        columns in :data:`COLUMNS` order (``id`` first)."""
        return cls(row[0], row[4], row[1], row[2], row[3], dict(zip(_NAMES, row[4:], strict=True)))

    def parsed(self) -> dict[str, Any]:
        """The data as JSON; ValueError for anything a record cannot be (jiter: bounded
        depth, no NaN or ``Infinity``, though an exponent out of range reads as infinity), so
        a tampered record is named, never a crash."""
        value: Any = pydantic_core.from_json(self.data, allow_inf_nan=False)
        if not isinstance(value, dict):
            raise ValueError("record data is not a JSON object")
        return value


@dataclass(frozen=True, slots=True)
class SignedPoint:
    """A signed statement that the record ``seq`` has hash ``hash``: the head, a checkpoint,
    or (``kind="anchor"``) the last record removed by a purge."""

    seq: int
    hash: str
    signed_at: str
    signer: str  # the Ed25519 public key, base64
    signature: str
    kind: Literal["head", "checkpoint", "anchor"] = "head"

    @staticmethod
    def statement(kind: str, seq: int, hash_: str, signed_at: str, signer: str) -> bytes:
        return canonical(
            {"kind": kind, "seq": seq, "hash": hash_, "signed_at": signed_at, "signer": signer}
        )

    def message(self) -> bytes:
        # A checkpoint is a kept head: both are signed as "head".
        kind = "anchor" if self.kind == "anchor" else "head"
        return self.statement(kind, self.seq, self.hash, self.signed_at, self.signer)

    def valid(self, trusted: frozenset[str] | None) -> bool:
        if trusted is not None and self.signer not in trusted:
            return False
        return verify_signature(self.signer, self.message(), self.signature)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "seq": self.seq,
            "hash": self.hash,
            "signed_at": self.signed_at,
            "signer": self.signer,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> SignedPoint:
        """Raises ValueError (or KeyError) for anything that is not a signed point."""
        seq = value["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**63:
            raise ValueError("a signed point's seq must be a whole number")
        return cls(
            seq=seq,
            hash=str(value["hash"]),
            signed_at=str(value["signed_at"]),
            signer=str(value["signer"]),
            signature=str(value["signature"]),
            kind=value.get("kind", "head"),
        )


Anchor = SignedPoint


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong, and the first record at fault (``seq``; ``id`` when it is known)."""

    kind: ProblemKind
    seq: int
    id: str | None
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": self.seq, "id": self.id, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    checked: int
    first_seq: int | None
    last_seq: int | None
    head: SignedPoint | None
    problem: Problem | None

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "head": self.head.as_json() if self.head else None,
            "problem": self.problem.as_json() if self.problem else None,
        }


def _prefix(prev: str) -> bytes | None:
    """What a record's hash starts from after a record hashed ``prev`` (None: a link that is
    not even ASCII, left to :meth:`ChainVerifier.feed` to report)."""
    try:
        return (prev + "\n").encode("ascii")
    except UnicodeEncodeError:
        return None


def _subjects_problem(hashed: Any, indexed: Sequence[Any]) -> str | None:
    """What is wrong with the citizen index entries ``indexed`` of a record whose hashed
    ``subjects`` are ``hashed``, or None (the same blind indexes, in whatever order)."""
    named = [] if hashed is None else hashed
    if not isinstance(named, list) or not all(isinstance(s, str) for s in named):
        return "its subjects are not a list of blind indexes"
    missing = set(named).difference(indexed)
    extra = set(indexed).difference(named)
    if not missing and not extra:
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} of its citizens missing (a search for them misses it)")
    if extra:
        parts.append(f"{len(extra)} citizen(s) it does not name (a search for them finds it)")
    return "the citizen index differs from the hashed record: " + ", ".join(parts)


class ChainVerifier:
    """Feed records in position order (:meth:`feed`), then :meth:`finish` with the signed head.

    Stops at the first problem (later findings would only be consequences of it).
    ``trusted`` are the public keys whose signatures count; None trusts the keys the log names
    (only for reading a bundle whose manifest key was checked separately).
    """

    def __init__(
        self,
        *,
        anchor: SignedPoint | None = None,
        checkpoints: Mapping[int, SignedPoint] | None = None,
        trusted: frozenset[str] | None = None,
        check_columns: bool = True,
        start: tuple[int, str] | None = None,
        recent: Sequence[tuple[int, str]] = (),
    ) -> None:
        """``start`` (seq, hash): the record the chain continues from, without a signature of
        its own because the caller vouches for it (a bundle's signed manifest, or a signed
        checkpoint another verifier checks); not with ``anchor``. ``recent``: (seq, id) of the
        records just before ``start``, oldest first, which a verifier of the whole chain
        would remember there (to name an inserted copy of one of them)."""
        if anchor is not None and start is not None:
            raise ValueError("a chain starts from an anchor or from a start point, not both")
        self.trusted = trusted
        self.checked = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.problem: Problem | None = None
        self._check_columns = check_columns
        self._checkpoints = dict(checkpoints or {})
        self._expected = 1
        self._prev = GENESIS
        self._recent: deque[tuple[int, str]] = deque(maxlen=RECENT_WINDOW)
        self._seen_ids: set[str] = set()
        self._last_good_checkpoint = 0
        self._index_problem: Problem | None = None
        if anchor is not None:
            if not anchor.valid(trusted):
                self.problem = Problem(
                    "signature",
                    anchor.seq + 1,
                    None,
                    f"the anchor left by the purge of records up to {anchor.seq} is not "
                    "signed by a trusted key: the start of the log cannot be trusted",
                )
            start = (anchor.seq, anchor.hash)
        if start is not None:
            self._expected = start[0] + 1
            self._prev = start[1]
            self._last_good_checkpoint = start[0]
        self._recent.extend(recent)
        self._seen_ids.update(rid for _, rid in self._recent)

    @property
    def reached(self) -> int:
        """The seq of the last record the chain was checked up to (or of its start)."""
        return self._expected - 1

    @property
    def pending_index_problem(self) -> Problem | None:
        """The citizen index's first problem, kept aside until :meth:`finish`."""
        return self._index_problem

    def _id_at(self, seq: int) -> str | None:
        for s, rid in reversed(self._recent):
            if s == seq:
                return rid
        return None

    def _fail(self, kind: ProblemKind, seq: int, rid: str | None, detail: str) -> bool:
        self.problem = Problem(kind, seq, rid, detail)
        return False

    def feed(self, record: StoredRecord, subjects: Sequence[Any] | None = None) -> bool:
        """Check one record; False once a problem is found (see :attr:`problem`).

        ``subjects``: what a citizen index (a store's) holds for this record; then the
        record's hashed ``subjects`` must name exactly those blind indexes, or a search for a
        citizen would miss it (an entry removed) or find it for someone else (one added). The
        first record whose entries differ is kept aside (:meth:`index_problem`) while the
        chain goes on being checked: a problem of the chain itself at the same record or
        before it is the one :meth:`finish` reports."""
        if self.problem is not None:
            return False
        seq = record.seq
        if seq > self._expected:
            missing = (
                f"record {self._expected} is missing"
                if seq == self._expected + 1
                else f"records {self._expected} to {seq - 1} are missing"
            )
            return self._fail("deleted", self._expected, None, f"{missing} (deleted)")
        try:
            data = record.parsed()
            data_seq = int(data["seq"])
            data_id = str(data["id"])
        except (ValueError, KeyError, TypeError, OverflowError):
            return self._fail("modified", seq, record.id, "its data is not a readable record")
        if data_seq != seq:
            if data_id in self._seen_ids or data_seq < seq:
                # A copy of an earlier record is the insertion; a record pushed down by one
                # inserted before it points back to the position the insertion took. A copy
                # of a record older than the ids remembered points back to no recent position:
                # it is named where it was put, not at the record it copies.
                copy = data_id in self._seen_ids or self._id_at(data_seq) is None
                first = seq if copy else data_seq
                return self._fail(
                    "inserted",
                    first,
                    self._id_at(first),
                    f"position {seq} holds record {data_seq}: a record was inserted at or "
                    f"after position {first}",
                )
            return self._fail(
                "reordered",
                seq,
                record.id,
                f"position {seq} holds record {data_seq} (records moved, or one before it "
                "deleted and the rest renumbered)",
            )
        if data_id != record.id:
            return self._fail(
                "modified", seq, record.id, f"its id column says {record.id}, its data {data_id}"
            )
        if record.prev_hash != self._prev:
            # (A link that is not even ASCII cannot be hashed: it was not recomputed, it is junk.)
            if (
                seq > 1
                and record.prev_hash.isascii()
                and chain_hash(record.prev_hash, record.data) == record.hash
            ):
                return self._fail(
                    "modified",
                    seq - 1,
                    self._id_at(seq - 1),
                    f"record {seq - 1} no longer hashes to what record {seq} was chained to: "
                    "it was changed (and its own hash recomputed)",
                )
            return self._fail("modified", seq, record.id, "its link to the previous record")
        if chain_hash(self._prev, record.data) != record.hash:
            return self._fail("modified", seq, record.id, "its data no longer matches its hash")
        if self._check_columns:
            for name in COLUMNS:
                if name in record.columns and record.columns[name] != data.get(name):
                    return self._fail(
                        "modified",
                        seq,
                        record.id,
                        f"its {name} column differs from the hashed record",
                    )
        if subjects is not None and self._index_problem is None:
            detail = _subjects_problem(data.get("subjects"), subjects)
            if detail is not None:
                self._index_problem = Problem("modified", seq, record.id, detail)
        checkpoint = self._checkpoints.get(seq)
        if checkpoint is not None:
            if not checkpoint.valid(self.trusted):
                return self._fail(
                    "signature", seq, record.id, f"the checkpoint at {seq} has a bad signature"
                )
            if checkpoint.hash != record.hash:
                first = self._last_good_checkpoint + 1
                return self._fail(
                    "modified",
                    first,
                    self._id_at(first),
                    f"the chain up to record {seq} differs from its signed checkpoint: a record "
                    f"between {first} and {seq} was changed and the chain rewritten",
                )
            self._last_good_checkpoint = seq
        self._prev = record.hash
        self._expected = seq + 1
        self._recent.append((seq, record.id))
        self._seen_ids.add(data_id)
        # Trimmed back to the recent window once it holds twice as many ids: trimming at the
        # window's own size would rebuild the set on every record from then on.
        if len(self._seen_ids) > 2 * RECENT_WINDOW:
            self._seen_ids = {rid for _, rid in self._recent}
        self.checked += 1
        self.first_seq = seq if self.first_seq is None else self.first_seq
        self.last_seq = seq
        return True

    def feed_rows(
        self,
        rows: Sequence[Sequence[Any]],
        subjects: Mapping[int, Sequence[Any]] | None = None,
    ) -> bool:
        """Check records given as a store reads them, ``(seq, data, prev_hash, hash, *columns)``
        with ``data`` bytes and the columns in :data:`COLUMNS` order (``id`` first), in
        position order; False once a problem is found.

        The same checks as :meth:`feed`, with the same problem named (but see ``_Checked``
        for forged records read more laxly), only faster: a record that passes them all (the
        usual case) is taken in one loop, without a :class:`StoredRecord`, only the fields
        checked read out of its data (``_Checked``) and its columns compared to them in one
        tuple comparison; a record that does not, or that has a checkpoint to check, goes
        through :meth:`feed`, which names what is wrong. (Checking a whole batch at once, one
        C-level pass per check, was slower: it keeps every parsed record alive.)

        ``subjects``: the citizen index over the rows' range, seq -> its blind indexes; each
        record's must be what its hashed ``subjects`` names (see :meth:`feed`)."""
        if self.problem is not None:
            return False
        if self._index_problem is not None:
            subjects = None  # only the first record whose entries differ is named
        parse = _read_checked
        fields = msgspec.structs.astuple
        sha256 = hashlib.sha256
        check_columns = self._check_columns
        checkpoints = self._checkpoints
        recent = self._recent
        none: Sequence[Any] = []
        expected = self._expected
        prev = self._prev
        prefix = _prefix(prev)
        seen = self._seen_ids
        need_first = self.first_seq is None
        checked = 0
        for row in rows:
            seq = row[0]
            if seq == expected and row[2] == prev and prefix is not None and seq not in checkpoints:
                digest = sha256(prefix)
                digest.update(row[1])
                if digest.hexdigest() == row[3]:
                    raw = row[1]
                    try:
                        if not raw.isascii():
                            raw.decode()  # msgspec skips the fields it does not read unchecked
                        data = fields(parse(raw))
                    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
                        data = None
                    if (
                        data is not None
                        and data[_SEQ] == seq
                        and data[0] is not None  # feed() needs an id in the data
                        and (row[4:] == data[:_SEQ] if check_columns else data[0] == row[4])
                        and (subjects is None or subjects.get(seq, none) == data[_SUBJECTS])
                    ):
                        # As feed() leaves a good record (its id is its data's: compared above).
                        prev = row[3]
                        prefix = _prefix(prev)
                        expected = seq + 1
                        rid = row[4]
                        recent.append((seq, rid))
                        seen.add(rid)
                        if len(seen) > 2 * RECENT_WINDOW:
                            seen = self._seen_ids = {r for _, r in recent}
                        checked += 1
                        if need_first:
                            self.first_seq = seq
                            need_first = False
                        continue
            # Anything else, as feed() sees it from where this loop left the chain.
            self._took(checked, expected, prev)
            checked = 0
            record = StoredRecord.from_row(row)
            if not self.feed(record, None if subjects is None else subjects.get(seq, none)):
                return False
            if self._index_problem is not None:
                subjects = None
            expected, prev, seen = self._expected, self._prev, self._seen_ids
            prefix = _prefix(prev)
            need_first = self.first_seq is None
        self._took(checked, expected, prev)
        return True

    def _took(self, checked: int, expected: int, prev: str) -> None:
        """Where :meth:`feed_rows`'s loop left the chain after ``checked`` good records."""
        if checked:
            self._expected, self._prev = expected, prev
            self.checked += checked
            self.last_seq = expected - 1

    def index_problem(self, problem: Problem) -> None:
        """Note a problem of the citizen index (found by the caller, e.g. entries for records
        that are not there); the first by seq is reported if the chain has none before it."""
        if self._index_problem is None or problem.seq < self._index_problem.seq:
            self._index_problem = problem

    def finish(
        self,
        head: SignedPoint | None,
        *,
        expect_head: bool = True,
        end: tuple[int, str] | None = None,
    ) -> VerifyReport:
        """The report, once every record was fed; ``head`` is the signed head of the log.
        ``end`` (seq, hash), instead of a head: the last record as the caller vouches for it
        (a bundle's signed manifest), checked like a head but without a signature of its own."""
        self.check_end(head, expect_head=expect_head, end=end)
        problem = self.problem
        index = self._index_problem
        if index is not None and (problem is None or index.seq < problem.seq):
            problem = index
        return VerifyReport(
            ok=problem is None,
            checked=self.checked,
            first_seq=self.first_seq,
            last_seq=self.last_seq,
            head=head,
            problem=problem,
        )

    def check_end(
        self,
        head: SignedPoint | None,
        *,
        expect_head: bool = True,
        end: tuple[int, str] | None = None,
    ) -> Problem | None:
        """The end checks of :meth:`finish` (the chain ends where the head, or ``end``, says,
        and no checkpoint names a record past it), when no problem was found before; the
        problem they find, if any."""
        if self.problem is None:
            self._check_end(head, expect_head, end)
            return self.problem
        return None

    def _check_end(
        self, head: SignedPoint | None, expect_head: bool, end: tuple[int, str] | None
    ) -> None:
        last = self._expected - 1
        for seq in sorted(self._checkpoints):
            if seq > last:
                self._fail(
                    "truncated",
                    last + 1,
                    None,
                    f"the log ends at record {last} but a signed checkpoint names record {seq}: "
                    f"records from {last + 1} were cut",
                )
                return
        if end is not None:
            self._check_last(end[0], end[1], "the manifest's last record")
            return
        if head is None:
            if expect_head and last > 0:
                self._fail("signature", last, self._id_at(last), "the signed head is missing")
            return
        if not head.valid(self.trusted):
            self._fail("signature", head.seq, None, "the head is not signed by a trusted key")
        else:
            self._check_last(head.seq, head.hash, "its signed head")

    def _check_last(self, seq: int, hash_: str, name: str) -> None:
        """The chain must end exactly at record ``seq`` hashed ``hash_`` (``name`` says who
        vouches for it)."""
        last = self._expected - 1
        if seq > last:
            self._fail(
                "truncated",
                last + 1,
                None,
                f"the log ends at record {last} but {name} is record {seq}: "
                f"records {last + 1} to {seq} were cut",
            )
        elif seq < last:
            self._fail(
                "inserted",
                seq + 1,
                self._id_at(seq + 1),
                f"records {seq + 1} to {last} follow {name}: they were added "
                "without the signing key",
            )
        elif hash_ != self._prev:
            first = self._last_good_checkpoint + 1
            self._fail(
                "modified",
                first,
                self._id_at(first),
                f"the chain differs from {name}: a record between {first} and {last} "
                "was changed and the chain rewritten",
            )


@dataclass(frozen=True, slots=True)
class RangeOutcome:
    """What a :class:`ChainVerifier` found on one range of the chain, for
    :func:`combine_ranges`: ``problem`` while feeding records, ``end_problem`` from
    :meth:`ChainVerifier.check_end` (run on the last range, or where the records ran out)."""

    checked: int
    first_seq: int | None
    last_seq: int | None
    problem: Problem | None
    index_problem: Problem | None
    end_problem: Problem | None = None

    @property
    def stopped(self) -> bool:
        """A single pass would have stopped in this range."""
        return self.problem is not None or self.end_problem is not None

    @classmethod
    def of(cls, verifier: ChainVerifier, end_problem: Problem | None = None) -> RangeOutcome:
        problem = verifier.problem if end_problem is None else None
        return cls(
            verifier.checked,
            verifier.first_seq,
            verifier.last_seq,
            problem,
            verifier.pending_index_problem,
            end_problem,
        )


def combine_ranges(
    outcomes: Sequence[RangeOutcome],
    head: SignedPoint | None,
    stray: Callable[[int | None, int | None], Problem | None] | None = None,
) -> VerifyReport:
    """The report one verifier fed the whole chain would give, from the outcomes of
    consecutive ranges (each starting where the previous one ends, at a signed checkpoint
    that range checked), in order. ``stray(first_seq, last_seq)``: the citizen index's entry
    for a record outside the chain, looked for when no record failed (as ``verify`` does)."""
    checked = 0
    first: int | None = None
    last: int | None = None
    index: Problem | None = None
    problem: Problem | None = None
    end: Problem | None = None
    for outcome in outcomes:
        checked += outcome.checked
        first = outcome.first_seq if first is None else first
        last = outcome.last_seq if outcome.last_seq is not None else last
        index = index or outcome.index_problem  # the ranges are in order: the first is first
        problem, end = outcome.problem, outcome.end_problem
        if outcome.stopped:
            break
    if problem is None and stray is not None:
        found = stray(first, last)
        if found is not None and (index is None or found.seq < index.seq):
            index = found
    problem = problem or end
    if index is not None and (problem is None or index.seq < problem.seq):
        problem = index
    return VerifyReport(
        ok=problem is None,
        checked=checked,
        first_seq=first,
        last_seq=last,
        head=head,
        problem=problem,
    )
