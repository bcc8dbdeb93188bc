"""Export bundles: a period of the exchange log in one signed zip file, checkable offline.

Like X-Road's ASiC archives, a bundle carries everything an inspector needs to check it with no
access to the bus: the records, the signed points that pin the chain inside them, and a signed
manifest. It holds exactly these four files:

``records.jsonl``
    One line per record, in sequence order: ``{"data", "hash", "id", "prev_hash", "seq"}``
    (canonical JSON), where ``data`` is the stored record data exactly, decoded as UTF-8 text
    (encode it back to UTF-8 to get the bytes that were hashed).
``checkpoints.json``
    The checkpoints (and the head, if it falls in the period) the bus signed for these records,
    as a JSON list (:meth:`bus.audit.chain.SignedPoint.as_json`).
``manifest.json``
    What the bundle holds: ``format`` (``lgsp-audit-bundle``) and ``version``, ``created_at``,
    the ``period`` asked (``from``, ``to``: recorded_at, UTC, ``from <= t < to``),
    ``first_seq``, ``last_seq``, ``count``, ``prev_hash`` (the hash the first record chains
    from: all zeros for the log's first record, otherwise the previous bundle's ``last_hash``),
    ``last_hash``, the ``sha256`` and ``bytes`` of the two files above under ``files``, the
    ``signer`` (Ed25519 public key, base64, and its fingerprint) and ``body_keys`` (the ids of
    the keys that encrypted the bodies it holds).
``manifest.sig``
    The Ed25519 signature (base64) of the exact bytes of ``manifest.json``.

:func:`verify_bundle` checks the signature (against a pinned key when one is given), both
digests, and the whole chain from ``prev_hash`` at ``first_seq - 1`` to ``last_hash`` at
``last_seq`` with :class:`~bus.audit.chain.ChainVerifier`; it names the first record at fault.
A bundle proves its own records; that consecutive bundles join up is seen by comparing one's
``prev_hash`` with the previous one's ``last_hash``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pydantic_core

from bus.audit.chain import ChainVerifier, Problem, SignedPoint, StoredRecord
from bus.audit.keys import AuditKeys, key_fingerprint, verify_signature
from bus.audit.record import FORMAT, GENESIS, canonical, utc_now
from bus.audit.store import AuditStore, ExportEntry, Progress

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "BundleError",
    "BundleReport",
    "export_bundle",
    "verify_bundle",
]

BUNDLE_FORMAT = "lgsp-audit-bundle"
BUNDLE_VERSION = 1
RECORDS = "records.jsonl"
CHECKPOINTS = "checkpoints.json"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
_FILES = (RECORDS, CHECKPOINTS, MANIFEST, SIGNATURE)

# What verify_bundle reads of a bundle it does not trust, at most.
_MAX_MANIFEST = 1 << 20
_MAX_SIGNATURE = 1 << 10
_MAX_CHECKPOINTS = 64 << 20
_MAX_LINE = 64 << 20
#: Records between two progress reports.
_EVERY = 1000
_HEX = frozenset("0123456789abcdef")


class BundleError(Exception):
    """A bundle that cannot be written, or a bundle or key that cannot be read at all."""


def _line(record: StoredRecord) -> bytes:
    return (
        canonical(
            {
                "seq": record.seq,
                "id": record.id,
                "prev_hash": record.prev_hash,
                "hash": record.hash,
                "data": record.data.decode("utf-8"),
            }
        )
        + b"\n"
    )


def _manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"


# --- export ----------------------------------------------------------------------------------


class _RecordWriter:
    """Writes the records the store passes to ``records.jsonl``, checking as it goes that they
    are the range asked, in order, and one chain (the store hands them over in its thread)."""

    def __init__(self, stream: IO[bytes], first_seq: int) -> None:
        self._stream = stream
        self._expected = first_seq
        self._chain: ChainVerifier | None = None
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.count = 0
        self.prev_hash = ""
        self.last_hash = ""
        self.body_keys: set[str] = set()

    def __call__(self, record: StoredRecord) -> None:
        if record.seq != self._expected:
            raise BundleError(
                f"the store passed record {record.seq} where record {self._expected} belongs"
            )
        if self._chain is None:
            self.prev_hash = record.prev_hash
            self._chain = ChainVerifier(
                start=(record.seq - 1, record.prev_hash), check_columns=False
            )
        if not self._chain.feed(record):
            problem = self._chain.problem
            assert problem is not None
            raise BundleError(
                f"record {problem.seq} is {problem.kind} ({problem.detail}): not exported"
            )
        body = record.parsed().get("body")
        if isinstance(body, dict) and isinstance(body.get("kid"), str):
            self.body_keys.add(body["kid"])
        line = _line(record)
        self._stream.write(line)
        self.sha256.update(line)
        self.size += len(line)
        self.count += 1
        self.last_hash = record.hash
        self._expected += 1


async def export_bundle(
    store: AuditStore,
    keys: AuditKeys,
    since: str | None,
    until: str | None,
    path: Path | str,
    progress: Progress | None = None,
    *,
    workers: int = 1,
) -> dict[str, Any]:
    """Write the records recorded in ``since <= recorded_at < until`` (UTC ISO text; None is
    open) to a new bundle at ``path``, keep it in the store's exports (so a purge may remove
    them), and return its manifest.

    The whole log is verified first (in up to ``workers`` processes, as
    :meth:`AuditStore.verify`): the bus does not sign a manifest over a chain that does not
    verify. ``progress`` sees both passes as one: (done, verify's total + records
    exported). Records are streamed to the zip, never all held in memory. The bundle is
    written beside ``path`` and linked into place when complete; an existing file is never
    replaced. Raises :class:`BundleError` (or the store's error) when it cannot export.
    """
    target = Path(path)
    _refuse_existing(target)
    span = await store.seq_range(since, until)
    if span is None:
        raise BundleError("no record was recorded in that period: nothing to export")
    first_seq, last_seq = span
    count = last_seq - first_seq + 1
    checked_total = 0

    def checking(done: int, total: int) -> None:
        nonlocal checked_total
        checked_total = total
        if progress is not None:
            progress(done, total + count)

    def exporting(done: int, total: int) -> None:
        if progress is not None:
            progress(checked_total + done, checked_total + count)

    report = await store.verify(
        trusted=frozenset({keys.public_key}), progress=checking, workers=workers
    )
    if not report.ok:
        problem = report.problem
        reason = (
            f"record {problem.seq} is {problem.kind}: {problem.detail}"
            if problem is not None
            else "it does not verify"
        )
        raise BundleError(f"the exchange log does not verify ({reason}); nothing was exported")

    created_at = utc_now()
    out = _BundleFile(target)
    try:
        with out.records() as stream:
            writer = _RecordWriter(stream, first_seq)
            points = await store.export(first_seq, last_seq, writer, exporting)
        if writer.count != count:
            raise BundleError(
                f"the store passed {writer.count} records of {first_seq} to {last_seq}"
            )
        kept = sorted(
            (p for p in points if first_seq <= p.seq <= last_seq),
            key=lambda p: (p.seq, p.kind),
        )
        checkpoints = (
            json.dumps([p.as_json() for p in kept], indent=2, sort_keys=True).encode() + b"\n"
        )
        out.add(CHECKPOINTS, checkpoints)
        manifest: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "record_format": FORMAT,
            "created_at": created_at,
            "period": {"from": since, "to": until},
            "first_seq": first_seq,
            "last_seq": last_seq,
            "count": count,
            "prev_hash": writer.prev_hash,
            "last_hash": writer.last_hash,
            "files": {
                RECORDS: {"sha256": writer.sha256.hexdigest(), "bytes": writer.size},
                CHECKPOINTS: {
                    "sha256": hashlib.sha256(checkpoints).hexdigest(),
                    "bytes": len(checkpoints),
                },
            },
            "signer": {"public_key": keys.public_key, "fingerprint": keys.signer_id},
            "body_keys": sorted(writer.body_keys),
        }
        manifest_bytes = _manifest_bytes(manifest)
        out.add(MANIFEST, manifest_bytes)
        out.add(SIGNATURE, (keys.sign(manifest_bytes) + "\n").encode("ascii"))
        digest, where = out.commit()
    finally:
        out.discard()
    await store.add_export(
        ExportEntry(
            first_seq=first_seq,
            last_seq=last_seq,
            sha256=digest,
            path=where,
            exported_at=created_at,
        )
    )
    return manifest


def _refuse_existing(target: Path) -> None:
    if target.exists():
        raise BundleError(f"{target} exists: a bundle is never overwritten")


class _BundleFile:
    """The zip being written, beside its final path until it is complete."""

    def __init__(self, target: Path) -> None:
        _refuse_existing(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.target = target
        self.partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
        self._raw = self.partial.open("xb")
        self._zip = zipfile.ZipFile(self._raw, "w", compression=zipfile.ZIP_DEFLATED)

    def records(self) -> IO[bytes]:
        """The stream of records.jsonl (ZIP64: it may exceed 4 GiB)."""
        return self._zip.open(RECORDS, "w", force_zip64=True)

    def add(self, name: str, data: bytes) -> None:
        self._zip.writestr(name, data)

    def commit(self) -> tuple[str, str]:
        """Complete the zip, make it durable and link it into place: (its SHA-256, its path).
        Never replaces a file that appeared at the target meanwhile."""
        self._zip.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        with self.partial.open("rb") as written:
            digest = hashlib.file_digest(written, "sha256").hexdigest()
        try:
            os.link(self.partial, self.target)
        except FileExistsError as exc:
            raise BundleError(f"{self.target} exists: a bundle is never overwritten") from exc
        _sync_directory(self.target.parent)
        return digest, str(self.target.resolve())

    def discard(self) -> None:
        """Close and remove the partial file (after :meth:`commit`, only the partial name)."""
        with contextlib.suppress(OSError, ValueError):  # a half-written zip is thrown away
            self._zip.close()
        self._raw.close()
        self.partial.unlink(missing_ok=True)


def _sync_directory(directory: Path) -> None:
    """Make the new bundle's name durable before the store says the records are exported."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- verification ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BundleReport:
    """What :func:`verify_bundle` found. ``problem`` names the first record at fault, as the
    store's verify does; ``errors`` say what is wrong with the bundle as a whole (signature,
    pinned key, digests, format). The bundle is good when there is neither."""

    path: str
    manifest: Mapping[str, Any] | None
    #: The key the manifest names and that signed it (base64), and its fingerprint.
    signer: str | None
    fingerprint: str | None
    #: Whether the caller pinned the key the bundle had to be signed with.
    pinned: bool
    checked: int
    problem: Problem | None
    errors: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.manifest is not None and self.problem is None and not self.errors

    def as_json(self) -> dict[str, Any]:
        manifest = self.manifest or {}
        return {
            "ok": self.ok,
            "path": self.path,
            "signer": self.signer,
            "fingerprint": self.fingerprint,
            "pinned": self.pinned,
            "first_seq": manifest.get("first_seq"),
            "last_seq": manifest.get("last_seq"),
            "count": manifest.get("count"),
            "checked": self.checked,
            "problem": self.problem.as_json() if self.problem else None,
            "errors": list(self.errors),
            "manifest": dict(self.manifest) if self.manifest is not None else None,
        }


class _Malformed(Exception):
    """A part of the bundle is not what this bus writes."""


@dataclass(frozen=True, slots=True)
class _Manifest:
    first_seq: int
    last_seq: int
    count: int
    prev_hash: str
    last_hash: str
    records_sha256: str
    checkpoints_sha256: str
    public_key: str
    fingerprint: str


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Malformed(f"{name} is not a number")
    return value


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _Malformed(f"{name} is not text")
    return value


def _parse_manifest(value: Any) -> _Manifest:
    if not isinstance(value, dict):
        raise _Malformed("it is not a JSON object")
    if value.get("format") != BUNDLE_FORMAT or value.get("version") != BUNDLE_VERSION:
        raise _Malformed(f"it is not a {BUNDLE_FORMAT} version {BUNDLE_VERSION} manifest")
    files = value.get("files")
    signer = value.get("signer")
    if not isinstance(files, dict) or not isinstance(signer, dict):
        raise _Malformed("files or signer is missing")
    digests = []
    for name in (RECORDS, CHECKPOINTS):
        entry = files.get(name)
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not _is_hash(digest):
            raise _Malformed(f"files.{name}.sha256 is not a SHA-256")
        digests.append(str(digest))
    manifest = _Manifest(
        first_seq=_int(value.get("first_seq"), "first_seq"),
        last_seq=_int(value.get("last_seq"), "last_seq"),
        count=_int(value.get("count"), "count"),
        prev_hash=_str(value.get("prev_hash"), "prev_hash"),
        last_hash=_str(value.get("last_hash"), "last_hash"),
        records_sha256=digests[0],
        checkpoints_sha256=digests[1],
        public_key=_str(signer.get("public_key"), "signer.public_key"),
        fingerprint=_str(signer.get("fingerprint"), "signer.fingerprint"),
    )
    if not (1 <= manifest.first_seq <= manifest.last_seq):
        raise _Malformed("first_seq and last_seq are not a range of records")
    if manifest.count != manifest.last_seq - manifest.first_seq + 1:
        raise _Malformed("count is not the number of records from first_seq to last_seq")
    if not (_is_hash(manifest.prev_hash) and _is_hash(manifest.last_hash)):
        raise _Malformed("prev_hash or last_hash is not a SHA-256")
    return manifest


def _key_bytes(text: str) -> bytes | None:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def _read_member(bundle: zipfile.ZipFile, name: str, limit: int) -> bytes:
    with bundle.open(name) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise _Malformed(f"{name} is larger than any this bus writes")
    return data


def _parse_checkpoints(data: bytes) -> dict[int, SignedPoint]:
    try:
        value: Any = pydantic_core.from_json(data, allow_inf_nan=False)
        if not isinstance(value, list):
            raise _Malformed("checkpoints.json is not a list")
        points = [SignedPoint.from_json(item) for item in value]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _Malformed(f"checkpoints.json is not a list of signed points ({exc})") from exc
    return {point.seq: point for point in points}


@dataclass(frozen=True, slots=True)
class _Line:
    seq: int
    record: StoredRecord | None  # None: the line is not a record


def _parse_line(raw: bytes, position: int) -> _Line:
    try:
        value: Any = pydantic_core.from_json(raw, allow_inf_nan=False)
        seq = value["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool):
            return _Line(position, None)
        record = StoredRecord(
            seq=seq,
            id=str(value["id"]),
            data=str(value["data"]).encode("utf-8"),
            prev_hash=str(value["prev_hash"]),
            hash=str(value["hash"]),
        )
    except (ValueError, KeyError, TypeError, UnicodeError):
        return _Line(position, None)
    return _Line(seq, record)


class _RecordsCheck:
    """Streams ``records.jsonl`` through the chain verifier and its SHA-256."""

    def __init__(
        self, manifest: _Manifest, verifier: ChainVerifier, progress: Progress | None
    ) -> None:
        self._manifest = manifest
        self._verifier = verifier
        self._progress = progress
        self.sha256 = hashlib.sha256()
        self.lines = 0
        #: A problem seen before the verifier could (a line repeating an earlier record).
        self.problem: Problem | None = None
        #: Once the verifier says records are missing: the first of them, and where it was
        #: found further down (then the records were moved, not deleted).
        self._missing: int | None = None
        self.moved: Problem | None = None

    def run(self, stream: IO[bytes]) -> None:
        total = self._manifest.count
        while raw := stream.readline(_MAX_LINE):
            if not raw.endswith(b"\n") and len(raw) >= _MAX_LINE:
                raise _Malformed(f"line {self.lines + 1} of {RECORDS} is longer than any record")
            self.sha256.update(raw)
            self.lines += 1
            self._take(raw)
            if self._progress is not None and self.lines % _EVERY == 0:
                self._progress(min(self.lines, total), total)
        if self._progress is not None:
            self._progress(min(self.lines, total), total)

    def _take(self, raw: bytes) -> None:
        verifier = self._verifier
        expected = self._manifest.first_seq if verifier.last_seq is None else verifier.last_seq + 1
        line = _parse_line(raw, expected)
        if self.problem is not None or verifier.problem is not None:
            self._look_for_missing(line)
            return
        if line.record is None:
            self.problem = Problem(
                "modified", expected, None, f"line {self.lines} of {RECORDS} is not a record"
            )
        elif line.seq < expected:
            self.problem = Problem(
                "inserted",
                expected,
                line.record.id,
                f"line {self.lines} holds record {line.seq} where record {expected} belongs: "
                "a record was inserted",
            )
        elif not verifier.feed(line.record):
            problem = verifier.problem
            if problem is not None and problem.kind == "deleted":
                self._missing = problem.seq

    def _look_for_missing(self, line: _Line) -> None:
        if self._missing is None or self.moved is not None or line.record is None:
            return
        if line.seq == self._missing:
            self.moved = Problem(
                "reordered",
                line.seq,
                line.record.id,
                f"record {line.seq} is at line {self.lines}, after records that follow it: "
                "records were moved",
            )


def verify_bundle(
    path: Path | str, *, public_key: str | None = None, progress: Progress | None = None
) -> BundleReport:
    """Check the bundle at ``path`` with nothing but the bundle (see the module's
    documentation). ``public_key`` (base64): the key it must be signed with; without it the
    manifest's own key is used and the report says it was not pinned (compare its fingerprint
    with the one the bus's operator publishes). Raises :class:`BundleError` if the file cannot
    be read or ``public_key`` is not an Ed25519 public key."""
    pinned = None
    if public_key is not None:
        pinned = _key_bytes(public_key)
        if pinned is None:
            raise BundleError("the public key must be 32 bytes, base64-encoded (Ed25519)")
    where = str(path)
    try:
        bundle = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        return BundleReport(
            where, None, None, None, pinned is not None, 0, None, ("it is not a zip archive",)
        )
    except OSError as exc:
        raise BundleError(f"cannot read {where}: {exc.strerror or exc}") from exc
    with bundle:
        return _verify(bundle, where, pinned, progress)


def _verify(
    bundle: zipfile.ZipFile, where: str, pinned: bytes | None, progress: Progress | None
) -> BundleReport:
    errors: list[str] = []
    names = bundle.namelist()
    missing = [name for name in _FILES if name not in names]
    extra = sorted(set(names) - set(_FILES))
    if len(names) != len(set(names)):
        errors.append("the zip holds a file twice: one of them was added")
    if extra:
        errors.append(f"the zip holds files the manifest does not cover: {', '.join(extra)}")

    def failed(reason: str) -> BundleReport:
        return BundleReport(where, None, None, None, pinned is not None, 0, None, (*errors, reason))

    if missing:
        return failed(f"the zip lacks {', '.join(missing)}")
    try:
        manifest_bytes = _read_member(bundle, MANIFEST, _MAX_MANIFEST)
        signature = (
            _read_member(bundle, SIGNATURE, _MAX_SIGNATURE).decode("ascii", "replace").strip()
        )
        manifest_value: Any = pydantic_core.from_json(manifest_bytes, allow_inf_nan=False)
        manifest = _parse_manifest(manifest_value)
    except (_Malformed, ValueError) as exc:
        return failed(f"{MANIFEST} is not a manifest this bus writes: {exc}")
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        return failed(f"the zip is damaged: {exc}")

    signer_raw = _key_bytes(manifest.public_key)
    if signer_raw is None:
        return failed(f"{MANIFEST} names a signer that is not an Ed25519 public key")
    signer = base64.b64encode(signer_raw).decode("ascii")
    fingerprint = key_fingerprint(signer_raw)
    if not verify_signature(signer, manifest_bytes, signature):
        errors.append(
            f"{SIGNATURE} is not a signature of {MANIFEST} by the key it names: the manifest "
            "was changed, or the signature replaced"
        )
    if manifest.fingerprint != fingerprint:
        errors.append(f"{MANIFEST} gives the signer's fingerprint wrongly")
    if pinned is not None and pinned != signer_raw:
        errors.append(
            f"the bundle is signed by key {fingerprint}, not by the pinned key "
            f"{key_fingerprint(pinned)}"
        )
    if manifest.first_seq == 1 and manifest.prev_hash != GENESIS:
        errors.append("the log's first record must chain from the all-zero hash")
    trusted = frozenset({base64.b64encode(pinned or signer_raw).decode("ascii")})

    checkpoints: dict[int, SignedPoint] = {}
    try:
        data = _read_member(bundle, CHECKPOINTS, _MAX_CHECKPOINTS)
        if hashlib.sha256(data).hexdigest() != manifest.checkpoints_sha256:
            errors.append(f"{CHECKPOINTS} is not the file the manifest names (its SHA-256)")
        checkpoints = _parse_checkpoints(data)
    except _Malformed as exc:
        errors.append(str(exc))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        errors.append(f"{CHECKPOINTS} cannot be read: the zip is damaged ({exc})")

    verifier = ChainVerifier(
        start=(manifest.first_seq - 1, manifest.prev_hash),
        checkpoints=checkpoints,
        trusted=trusted,
        check_columns=False,
    )
    check = _RecordsCheck(manifest, verifier, progress)
    problem: Problem | None = None
    try:
        with bundle.open(RECORDS) as stream:
            check.run(stream)
    except _Malformed as exc:
        errors.append(str(exc))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        errors.append(f"{RECORDS} cannot be read: the zip is damaged ({exc})")
    else:
        if check.sha256.hexdigest() != manifest.records_sha256:
            errors.append(f"{RECORDS} is not the file the manifest names (its SHA-256)")
        report = verifier.finish(
            None, expect_head=False, end=(manifest.last_seq, manifest.last_hash)
        )
        problem = check.moved or check.problem or report.problem
    return BundleReport(
        path=where,
        manifest=manifest_value,
        signer=signer,
        fingerprint=fingerprint,
        pinned=pinned is not None,
        checked=verifier.checked,
        problem=problem,
        errors=tuple(errors),
    )
