"""Compaction of landed pushes into Parquet, long replies joined.

:func:`compact` re-parses landed files with the same vendor parsers the
receiver used, appends the rows to ``reports/`` and ``inbound/`` (opt-out
senders to ``suppression/``) and deletes the files only after the Parquet is
durable. A crash in between leaves the files to be compacted again: duplicate
rows with the same ``report_key``/``inbound_key``, which readers drop. Replayed
pushes are the same case, so nothing ever counts twice.

Parts of a long Chuanglan reply (``isems=1``, ``emshead`` "id,total,n") wait
in ``inbound/parts/`` until every part of that id from that sender is there,
then become one reply, the parts joined in order. A part whose siblings do not
all arrive within ``ems_part_timeout_s`` of its landing is compacted as it is:
one row per part, ``raw`` keeping ``isems``/``emshead`` so the row shows it is
a fragment; a straggler arriving later (or a replayed copy of a part whose
reply was already joined) waits its own timeout, then follows the same way.

A file that no longer parses (hand-edited, or an Emay appId since removed from
the config) is moved to ``quarantine/<conn_id>/<kind>/`` for a person to look
at: it is never deleted, and it does not block the files behind it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from sms_provider.data import reports as report_data
from sms_provider.data.opt_outs import add_opt_outs
from sms_provider.data.storage import DataRoot
from sms_provider.errors import SmsError
from sms_provider.models import DeliveryReport, InboundMessage
from sms_provider.receiver.config import ReceiverConfig
from sms_provider.receiver.records import (
    INBOUND,
    LANDING,
    PARTS,
    QUARANTINE,
    REPORTS,
    SOURCE,
    STALE_TEMP_S,
    SUFFIX,
    TMP_SUFFIX,
    LandingError,
    LandingRecord,
    fsync_dir,
    is_part,
    parse_record,
)
from sms_provider.vendors import chuanglan

try:  # one compaction at a time on a local root; elsewhere duplicates are harmless
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

DELETE_THREADS = 8


@dataclass
class CompactResult:
    """What one compaction did; ``counts`` for logs and task return values."""

    files: int = 0            # landing files compacted and deleted
    reports: int = 0          # report rows written
    inbound: int = 0          # reply rows written (a joined long reply is one)
    opt_outs: int = 0         # suppression rows written
    parts_waiting: int = 0    # parts of long replies still waiting for their siblings
    parts_timed_out: int = 0  # parts compacted alone after the timeout
    quarantined: int = 0      # files that no longer parse, moved aside
    skipped: bool = False     # another compaction held the lock
    paths: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {"files": self.files, "reports": self.reports, "inbound": self.inbound,
                "opt_outs": self.opt_outs, "parts_waiting": self.parts_waiting,
                "parts_timed_out": self.parts_timed_out, "quarantined": self.quarantined,
                "skipped": int(self.skipped)}

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.counts.items())


@dataclass(frozen=True)
class _File:
    path: str
    conn_id: str
    kind: str
    part: bool

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class _Batch:
    """Rows of one batch, grouped by (conn_id, vendor), with per-row landing times."""

    reports: dict[tuple[str, str], list[tuple[DeliveryReport, datetime]]] = field(
        default_factory=lambda: defaultdict(list))
    inbound: dict[tuple[str, str], list[tuple[InboundMessage, datetime]]] = field(
        default_factory=lambda: defaultdict(list))
    done: list[_File] = field(default_factory=list)


def compact(root: DataRoot, config: ReceiverConfig, *, now: datetime | None = None,
            batch_files: int | None = None) -> CompactResult:
    """Move every file landed before this call into Parquet, ``batch_files`` at a time.

    Files landing meanwhile wait for the next call, so a flood of pushes cannot
    keep one call running. Safe to run beside the receiver and beside another
    compaction (on a local root a lock file makes the second one skip).
    """
    now = now or datetime.now(UTC)
    size = batch_files or config.compact_batch_files
    result = CompactResult()
    with _compaction_lock(root) as held:
        if not held:
            result.skipped = True
            return result
        files = _list_landing(root, now)
        regular = [f for f in files if not f.part]
        for start in range(0, len(regular), size):
            batch = _Batch()
            for item in regular[start:start + size]:
                _load_into(root, config, item, batch, result)
            _flush(root, config, batch, result, now)
        _compact_parts(root, config, [f for f in files if f.part], size, now, result)
    if result.files or result.quarantined:
        log.info("compacted landing files: %s", result)
    return result


@contextlib.contextmanager
def _compaction_lock(root: DataRoot) -> Iterator[bool]:
    if not root.is_local or fcntl is None:
        yield True
        return
    folder = root.local_path(LANDING)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".compact.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _list_landing(root: DataRoot, now: datetime) -> list[_File]:
    """Landed files, oldest first; stale temporary files (never acknowledged) removed."""
    base = root.path(LANDING)
    selector = pafs.FileSelector(base, allow_not_found=True, recursive=True)
    out: list[_File] = []
    for info in root.fs.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(base) + 1:].split("/")
        name = rel[-1]
        if name.startswith("."):
            _drop_stale_temp(root, info, now)
            continue
        if not name.endswith(SUFFIX) or len(rel) not in (3, 4):
            continue
        conn_id, kind = rel[0], rel[1]
        part = len(rel) == 4
        if kind not in (REPORTS, INBOUND) or (part and rel[2] != PARTS):
            continue
        out.append(_File(info.path, conn_id, kind, part))
    out.sort(key=lambda f: f.name)
    return out


def _drop_stale_temp(root: DataRoot, info: pafs.FileInfo, now: datetime) -> None:
    if not info.base_name.endswith(TMP_SUFFIX) or info.mtime is None:
        return
    mtime = info.mtime if info.mtime.tzinfo else info.mtime.replace(tzinfo=UTC)
    if (now - mtime).total_seconds() > STALE_TEMP_S:
        with contextlib.suppress(FileNotFoundError, OSError):
            root.fs.delete_file(info.path)


def _read(root: DataRoot, item: _File, config: ReceiverConfig, result: CompactResult
          ) -> tuple[LandingRecord, list[Any]] | None:
    """Record and parsed items; None when the file is gone or was quarantined."""
    try:
        with root.fs.open_input_stream(item.path) as stream:
            data = stream.read()
    except FileNotFoundError:
        return None  # a concurrent compaction took it
    try:
        record = LandingRecord.from_json(data)
        return record, list(parse_record(record, config))
    except (LandingError, SmsError) as exc:
        _quarantine(root, item, exc)
        result.quarantined += 1
        return None


def _load_into(root: DataRoot, config: ReceiverConfig, item: _File, batch: _Batch,
               result: CompactResult) -> None:
    read = _read(root, item, config, result)
    if read is None:
        return
    record, items = read
    key = (record.conn_id, record.vendor)
    target = batch.reports if record.kind == REPORTS else batch.inbound
    target[key].extend((entry, record.received_at) for entry in items)
    batch.done.append(item)


def _quarantine(root: DataRoot, item: _File, exc: Exception) -> None:
    target = root.path(QUARANTINE, item.conn_id, item.kind, item.name)
    root.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
    root.fs.move(item.path, target)
    # the error names the vendor, the push form and the field: no payload, no credential
    log.warning("landing file %s does not parse (%s): moved to %s", item.name, exc,
                root.path(QUARANTINE, item.conn_id, item.kind))


def _flush(root: DataRoot, config: ReceiverConfig, batch: _Batch, result: CompactResult,
           now: datetime) -> None:
    """Suppression first, then replies and reports; landing files go last."""
    written: list[str] = []
    inbound_tables = []
    for (conn_id, vendor), rows in batch.inbound.items():
        table = report_data.inbound_table(
            [m for m, _ in rows], conn_id=conn_id, vendor=vendor, source=SOURCE,
            opt_out_words=config.opt_out_words)
        table = _with_received_at(table, [at for _, at in rows])
        inbound_tables.append((conn_id, table))
        added = add_opt_outs(root, conn_id, table, now=now)  # the same path as pulled replies
        written += added.paths
        result.opt_outs += added.suppressed
    for conn_id, table in inbound_tables:
        written += report_data.append(root, INBOUND, conn_id, table, prefix=SOURCE)
        result.inbound += table.num_rows
    for (conn_id, vendor), rows in batch.reports.items():
        table = report_data.report_table([r for r, _ in rows], conn_id=conn_id,
                                         vendor=vendor, source=SOURCE)
        table = _with_received_at(table, [at for _, at in rows])
        written += report_data.append(root, REPORTS, conn_id, table, prefix=SOURCE)
        result.reports += table.num_rows
    _make_durable(root, written)
    result.paths += written
    _delete(root, [item.path for item in batch.done])
    result.files += len(batch.done)


def _delete(root: DataRoot, paths: Sequence[str]) -> None:
    """Several at a time: on ext4 unlinking a file that was fsync'd waits for the
    journal (~3 ms each here, one by one), and concurrent unlinks share that wait."""
    def one(path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            root.fs.delete_file(path)

    if len(paths) < 2:
        for path in paths:
            one(path)
        return
    with ThreadPoolExecutor(max_workers=DELETE_THREADS) as pool:
        list(pool.map(one, paths))


def _with_received_at(table: pa.Table, moments: Sequence[datetime]) -> pa.Table:
    """Each row keeps the time its push landed, not the time it was compacted."""
    index = table.schema.get_field_index("received_at")
    column = pa.array([int(m.timestamp() * 1000) for m in moments], pa.int64()).cast(
        table.schema.field(index).type)
    return table.set_column(index, table.schema.field(index), column)


def _make_durable(root: DataRoot, paths: Sequence[str]) -> None:
    """The Parquet files' renames must be on disk before the landing files go."""
    if not root.is_local:
        return
    for folder in sorted({p.rsplit("/", 1)[0] for p in paths}):
        fsync_dir(folder)


# --- long replies --------------------------------------------------------------------
def _compact_parts(root: DataRoot, config: ReceiverConfig, files: list[_File], size: int,
                   now: datetime, result: CompactResult) -> None:
    """Join complete long replies; compact a part alone once its timeout has passed."""
    groups: dict[tuple[str, ...], list[tuple[_File, LandingRecord, InboundMessage]]] = \
        defaultdict(list)
    batch = _Batch()
    for item in files[:size]:
        read = _read(root, item, config, result)
        if read is None:
            continue
        record, items = read
        for message in items:
            if not is_part(message):  # not a part after all: compacts like any reply
                batch.inbound[(record.conn_id, record.vendor)].append(
                    (message, record.received_at))
                if item not in batch.done:
                    batch.done.append(item)
                continue
            ems_id, total, _ = chuanglan.parse_emshead(message.raw["emshead"])
            key = (record.conn_id, record.vendor, message.mobile, message.destination,
                   ems_id, str(total))
            groups[key].append((item, record, message))
    timeout = timedelta(seconds=config.ems_part_timeout_s)
    for key, members in groups.items():
        conn_id, vendor, total = key[0], key[1], int(key[5])
        by_number: dict[int, tuple[LandingRecord, InboundMessage]] = {}
        for _, record, message in sorted(members, key=lambda m: m[1].received_at):
            number = chuanglan.parse_emshead(message.raw["emshead"])[2]
            by_number.setdefault(number, (record, message))
        if len(by_number) == total:
            landed = max(record.received_at for _, record, _ in members)
            batch.inbound[(conn_id, vendor)].append((_joined(by_number), landed))
        elif now - min(record.received_at for _, record, _ in members) >= timeout:
            for _, record, message in members:
                batch.inbound[(conn_id, vendor)].append((message, record.received_at))
            result.parts_timed_out += len(members)
        else:
            result.parts_waiting += len(members)
            continue
        batch.done += [item for item, _, _ in members]
    result.parts_waiting += max(0, len(files) - size)
    if batch.done:
        _flush(root, config, batch, result, now)


def _joined(parts: Mapping[int, tuple[LandingRecord, InboundMessage]]) -> InboundMessage:
    """One reply from all its parts, in part order; the first part's fields otherwise."""
    ordered = [parts[n][1] for n in sorted(parts)]
    first = ordered[0]
    content = "".join(m.content for m in ordered)
    raw = {**first.raw, "msg": content, "emsparts": [m.raw.get("emshead") for m in ordered]}
    times = [m.received_at for m in ordered if m.received_at is not None]
    return InboundMessage(mobile=first.mobile, content=content,
                          received_at=min(times) if times else None,
                          destination=first.destination, message_id=first.message_id,
                          reference=first.reference, raw=raw)


def landed_files(root: DataRoot) -> list[str]:
    """Paths of the files waiting for compaction (parts included), oldest first."""
    return [f.path for f in _list_landing(root, datetime.now(UTC))]
