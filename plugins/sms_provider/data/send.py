"""Send one shard exactly once, whatever happened to earlier attempts.

The shard is cut into chunks deterministically (same prepared rows, same
chunks), each chunk goes through the ledger (intent before the request,
outcome after), and the submissions are rebuilt from the ledger, so a rerun
after a retry, a clear or a SIGKILL produces the same file and sends only
what certainly has not been sent.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.ledger import (
    AMBIGUOUS,
    FINAL_STATES,
    INTENT,
    PENDING,
    REJECTED,
    SENT,
    ChunkRecord,
    LedgerLockedError,
    SenderIdentity,
    SendLedger,
)
from sms_provider.data.schemas import SUBMISSION_SCHEMA
from sms_provider.errors import (
    AmbiguousError,
    AuthenticationError,
    InsufficientBalanceError,
    PermanentError,
    RateLimitedError,
    RetryableError,
)
from sms_provider.models import AcceptedBatch, Submission
from sms_provider.vendors.base import OutboundBatch, VendorClient

log = logging.getLogger(__name__)


class Chunk:
    """One request's worth of a shard: a run of planned rows, kept as Arrow columns.

    A million-recipient shard held as Python message objects keeps the garbage
    collector walking them for the whole send; as Arrow slices it costs nothing
    until a worker builds the messages of the one request it is making.
    """

    __slots__ = ("fingerprint", "index", "rows", "uniform")

    def __init__(self, index: int, fingerprint: str, rows: pa.Table,
                 uniform: frozenset[str] = frozenset()) -> None:
        self.index = index
        self.fingerprint = fingerprint
        #: row_number, mobile, content, custom_id (as the vendor gets it), variables
        self.rows = rows
        #: columns that hold one value throughout, by the plan's construction
        self.uniform = uniform

    def __len__(self) -> int:
        return self.rows.num_rows

    def __repr__(self) -> str:
        return (f"Chunk(index={self.index}, recipients={len(self)}, "
                f"fingerprint={self.fingerprint!r})")

    def column(self, name: str) -> list[Any]:
        """One planned column as Python values (through numpy: several times faster
        than ``to_pylist``, which makes an Arrow scalar per value); a uniform column
        repeats one Python value instead of making a string per recipient."""
        if name in self.uniform and len(self):
            return [self.rows[name][0].as_py()] * len(self)
        return self.rows[name].to_numpy().tolist()

    @property
    def row_numbers(self) -> list[int]:
        return self.column("row_number")

    @property
    def custom_ids(self) -> list[str | None]:
        return self.column("custom_id")

    @property
    def messages(self) -> OutboundBatch:
        """The request's messages, built anew on each call (they are not kept)."""
        variables = self.rows["variables"]
        parsed = ([json.loads(v) if v else None for v in self.column("variables")]
                  if variables.null_count < len(variables) else [None] * len(self))
        contents = self.column("content")
        if None in contents:
            contents = [content or "" for content in contents]
        return OutboundBatch(self.column("mobile"), contents, self.custom_ids, parsed)


@dataclass
class ShardResult:
    counts: dict[str, int] = field(default_factory=dict)
    table: pa.Table | None = None
    unsent_chunks: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.unsent_chunks == 0


def request_reference(campaign_id: str, shard: int, chunk: int) -> str:
    """A per-request custom id (EUMS reference): ≤50 chars, no ``,`` or ``;``."""
    digest = hashlib.sha1(campaign_id.encode()).hexdigest()[:10]
    return f"{digest}-{shard}-{chunk}"


def plan_chunks(table: pa.Table, *, campaign_id: str, shard: int, max_batch: int,
                personalised: bool, custom_id_scope: str | None) -> list[Chunk]:
    """Cut a shard into requests: identical content together unless the vendor personalises."""
    return list(iter_chunks(table, campaign_id=campaign_id, shard=shard, max_batch=max_batch,
                            personalised=personalised, custom_id_scope=custom_id_scope))


def iter_chunks(table: pa.Table, *, campaign_id: str, shard: int, max_batch: int,
                personalised: bool, custom_id_scope: str | None) -> Iterator[Chunk]:
    """:func:`plan_chunks` one chunk at a time.

    Rows go by row number; unless the vendor personalises, rows of one content
    go together, contents in the order they first appear. Each chunk's
    fingerprint is the SHA-256 of its rows' lines (row number, mobile, content,
    custom id, variables; tab-separated, ``None`` for a missing value), so a
    rerun recognises its chunks and refuses changed ones.
    """
    planned, starts = _planned_rows(table, campaign_id=campaign_id, shard=shard,
                                    max_batch=max_batch, personalised=personalised,
                                    custom_id_scope=custom_id_scope)
    # the same content throughout a chunk unless the vendor personalises; the same id
    # throughout unless ids are per message
    uniform = frozenset(({"content"} if not personalised else set())
                        | ({"custom_id"} if custom_id_scope != "message" else set()))
    index = 0
    chunks = len(starts) - 1
    while index < chunks:  # lines a block at a time: the first request leaves sooner
        last = index
        block = _FINGERPRINT_BLOCK_ROWS if index else 0  # the first chunk on its own
        while last < chunks and starts[last + 1] - starts[index] <= block:
            last += 1
        last = max(last, index + 1)
        base = starts[index]
        offsets, data = _fingerprint_lines(planned.slice(base, starts[last] - base))
        for i in range(index, last):
            start, stop = starts[i] - base, starts[i + 1] - base
            digest = hashlib.sha256(data[offsets[start]:offsets[stop] - 1]).hexdigest()[:32]
            yield Chunk(i, digest, planned.slice(starts[i], starts[i + 1] - starts[i]),
                        uniform)
        index = last


#: rows whose fingerprint lines are built at once
_FINGERPRINT_BLOCK_ROWS = 1 << 15
_PLANNED_COLUMNS = ("row_number", "mobile", "content", "custom_id", "variables")


def _planned_rows(table: pa.Table, *, campaign_id: str, shard: int, max_batch: int,
                  personalised: bool, custom_id_scope: str | None
                  ) -> tuple[pa.Table, list[int]]:
    """The rows in send order with the custom id each request carries, and where each
    chunk starts (one entry more than there are chunks)."""
    if not _ascending(table["row_number"]):  # prepared shards already are: no copy
        table = table.sort_by("row_number")
    n = table.num_rows

    def column(name: str, kind: pa.DataType, default: pa.Array) -> pa.ChunkedArray | pa.Array:
        return pc.cast(table[name], kind) if name in table.column_names else default

    row_number = column("row_number", pa.int64(), pa.nulls(n, pa.int64()))
    mobile = column("mobile", pa.string(), pa.nulls(n, pa.string()))
    content = column("content", pa.string(), pa.array([""] * n, pa.string()))
    variables = column("variables", pa.string(), pa.nulls(n, pa.string()))
    custom_id = column("custom_id", pa.string(), pa.nulls(n, pa.string()))
    order = None
    if personalised or n == 0:
        group_sizes = np.array([n] if n else [], dtype=np.int64)
    else:
        groups = pc.dictionary_encode(content, null_encoding="encode")
        codes = (np.concatenate([chunk.indices.to_numpy() for chunk in groups.chunks])
                 if isinstance(groups, pa.ChunkedArray) else groups.indices.to_numpy())
        if np.any(codes[1:] < codes[:-1]):  # some content comes back after another
            order = np.argsort(codes, kind="stable")  # by first appearance, rows in order
        group_sizes = np.bincount(codes)
    sizes = _chunk_sizes(group_sizes, max_batch)  # a chunk never spans two groups
    chunk_of_row = np.repeat(np.arange(sizes.size), sizes)
    starts = [0, *np.cumsum(sizes).tolist()]
    planned = pa.table({"row_number": row_number, "mobile": mobile, "content": content,
                        "custom_id": custom_id, "variables": variables})
    if order is not None:
        planned = planned.take(pa.array(order))
    if custom_id_scope == "request":
        refs = pa.array([request_reference(campaign_id, shard, index)
                         for index in range(len(starts) - 1)], pa.string())
        planned = planned.set_column(3, "custom_id", refs.take(pa.array(chunk_of_row)))
    elif custom_id_scope != "message":
        planned = planned.set_column(3, "custom_id", pa.nulls(n, pa.string()))
    return planned, starts


def _ascending(values: pa.ChunkedArray | pa.Array) -> bool:
    numbers = values.to_numpy()
    return bool(np.all(numbers[1:] >= numbers[:-1]))


def _chunk_sizes(group_sizes: np.ndarray, max_batch: int) -> np.ndarray:
    """Each group cut into requests of ``max_batch`` rows, the last one holding the rest."""
    full, rest = np.divmod(group_sizes, max_batch)
    counts = full + (rest > 0)
    sizes = np.full(int(counts.sum()), max_batch, dtype=np.int64)
    last = np.cumsum(counts) - 1
    sizes[last[rest > 0]] = rest[rest > 0]
    return sizes


def _fingerprint_lines(planned: pa.Table) -> tuple[np.ndarray, memoryview]:
    """Every planned row as its fingerprint line plus a newline, in one buffer.

    Returns the line offsets and the bytes: a chunk's text is one contiguous
    slice, hashed without a Python string per row.
    """
    none = pa.scalar("None", pa.large_string())
    fields = [pc.fill_null(pc.cast(planned[name], pa.large_string()), none)
              for name in _PLANNED_COLUMNS]  # 64-bit offsets: a shard may pass 2 GiB
    tab, newline = pa.scalar("\t", pa.large_string()), pa.scalar("\n", pa.large_string())
    lines = pc.binary_join_element_wise(pc.binary_join_element_wise(*fields, tab),
                                        pa.scalar("", pa.large_string()), newline)
    lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
    _, offsets_buffer, data_buffer = lines.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[
        lines.offset:lines.offset + len(lines) + 1]
    data = memoryview(data_buffer) if data_buffer is not None else memoryview(b"")
    return offsets, data


OUTCOME_FIELDS = ("message_id", "custom_id", "charge_items", "vendor_code", "status",
                  "description")


def _outcome(subs: Sequence[Submission]) -> dict[str, Any]:
    """Per recipient, by column: what the ledger keeps of a settled chunk."""
    if isinstance(subs, AcceptedBatch):
        columns = subs.by_column()
    else:
        columns = {"message_id": [s.message_id for s in subs],
                   "custom_id": [s.custom_id for s in subs],
                   "charge_items": [s.charge_items for s in subs],
                   "vendor_code": [s.vendor_code for s in subs],
                   "status": [s.status.value for s in subs],
                   "description": [s.description for s in subs]}
    return {name: _stored(columns[name]) if isinstance(columns[name], list)
            else columns[name] for name in OUTCOME_FIELDS}


def _for_ledger(outcome: dict[str, Any]) -> dict[str, Any]:
    """The outcome as the ledger stores it: a run of consecutive ids as its first."""
    ids = outcome["message_id"]
    run = _id_run(ids) if isinstance(ids, list) else None
    return {**outcome, "message_id": run} if run else outcome


def _stored(values: list[Any]) -> Any:
    """A column as the ledger keeps it: one value when every recipient shares it.

    Most columns of a chunk are uniform (status, charge items, the request's
    reference); a single value keeps the synced ledger write a third the size.
    """
    if values and values.count(values[0]) == len(values):
        return values[0]
    return values


#: the key of a stored message id column that is one run of consecutive numbers
ID_RUN = "consecutive_from"


def _id_run(ids: list[Any]) -> dict[str, str] | None:
    """``{ID_RUN: first}`` when the ids are consecutive decimal numbers of one width.

    Gateways number the messages of one request in sequence (EUMS's own example
    answer does), and a thousand ids are most of what a synced ledger commit
    writes; the first one says it all. Anything else stays a list. Checked
    without a Python step per id: strings of digits of one width, ascending,
    all different, spanning exactly as many numbers as there are ids, can only
    be consecutive (and a width-w digit string is its number's only spelling).
    """
    try:
        joined = "".join(ids)
    except TypeError:  # an id that is not a string
        return None
    # bytes.isdigit: str.isdigit looks each character up in the Unicode tables
    if not (joined.isascii() and joined.encode("ascii").isdigit()):
        return None
    first, last = ids[0], ids[-1]
    if (set(map(len, ids)) != {len(first)} or int(last) - int(first) != len(ids) - 1
            or int(last) >= 2**63 or ids != sorted(ids) or len(set(ids)) != len(ids)):
        return None
    return {ID_RUN: first}


def _uniform(n: int, **values: Any) -> dict[str, Any]:
    return {name: values[name] for name in OUTCOME_FIELDS}


_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None
#: chunks whose part of the submissions table is built at once while a shard is sent
RESULT_BLOCK_CHUNKS = 64
#: young-generation threshold while sending (Python's default is 700)
SENDING_GC_THRESHOLD = 50_000


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run the young-generation collector less often while a shard is sent.

    Each request makes thousands of short-lived objects (the answer's
    entries, the messages, the submissions). At the default threshold the
    collector runs in the middle of every request, finds them still alive,
    promotes them, and so sets off full collections of the task's whole heap:
    a third of the sender's CPU. Nothing sent creates lasting garbage cycles,
    so collecting less often costs no memory to speak of. What the process held
    before the send (Airflow, the libraries, the prepared table) is frozen out
    of the collections meanwhile: a full collection would otherwise walk all
    of it to find the send's few cycles. Senders on several threads share one
    setting; the last one out restores the old one and unfreezes.
    """
    global _gc_users, _gc_saved
    with _gc_lock:
        if _gc_users == 0:
            _gc_saved = gc.get_threshold()
            gc.set_threshold(max(SENDING_GC_THRESHOLD, _gc_saved[0]), *_gc_saved[1:])
            gc.freeze()
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0 and _gc_saved is not None:
                gc.set_threshold(*_gc_saved)
                gc.unfreeze()


class ShardSender:
    """Sends the chunks of one shard through the ledger with bounded concurrency.

    ``owner`` is who this run is in the ledger (a new sender of this process by
    default; a task passes its task instance and try). A chunk found in flight
    under another sender that may still be sending it is waited for, up to
    ``wait_s`` seconds, and its outcome used; past that the chunk stays unsent
    in this run's result, with an error naming the other sender.
    """

    def __init__(self, client: VendorClient, ledger: SendLedger, campaign_id: str, shard: int,
                 *, conn_id: str = "", template_id: str | None = None,
                 concurrency: int = 4,
                 max_attempts: int = 3, backoff_s: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep,
                 owner: SenderIdentity | None = None, wait_s: float = 60.0,
                 poll_s: float = 0.1) -> None:
        self.client = client
        self.ledger = ledger
        self.campaign_id = campaign_id
        self.conn_id = conn_id
        self.shard = shard
        self.template_id = template_id
        self.concurrency = max(1, concurrency)
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.owner = owner or SenderIdentity.current()
        self.wait_s = wait_s
        self.poll_s = poll_s
        self._abort = threading.Event()
        self._abort_reason: str | None = None
        self._ledger_error: LedgerLockedError | None = None
        self._held_elsewhere: dict[int, str] = {}

    def plan(self, table: pa.Table) -> Iterator[Chunk]:
        return iter_chunks(table, campaign_id=self.campaign_id, shard=self.shard,
                           max_batch=self.client.max_batch,
                           personalised=self.client.personalised_batches,
                           custom_id_scope=self.client.custom_id_scope)

    def run(self, table: pa.Table) -> ShardResult:
        chunks: list[Chunk] = []
        futures = []
        with _fewer_collections(), self._lease():
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="sms-send") as pool:
                for chunk in self.plan(table):  # the first requests leave while planning
                    chunks.append(chunk)
                    futures.append(pool.submit(self._send_and_arrange, chunk))
                # the table is put together a block of chunks at a time as they settle,
                # so once the last answer is in, only the last block is left to do
                parts = []
                for start in range(0, len(futures), RESULT_BLOCK_CHUNKS):
                    block = slice(start, start + RESULT_BLOCK_CHUNKS)
                    done = [f.result() for f in futures[block]]
                    if self._ledger_error is not None:
                        break
                    parts.append(build_result(
                        self.campaign_id, self.shard, chunks[block],
                        [record for record, _ in done], conn_id=self.conn_id,
                        vendor=self.client.vendor, settled=[columns for _, columns in done]))
            if self._ledger_error is not None:
                raise self._ledger_error
            result = _joined(parts) if parts else build_result(
                self.campaign_id, self.shard, [], [], conn_id=self.conn_id,
                vendor=self.client.vendor)
        if self._held_elsewhere:
            result.errors[:0] = [self._held_elsewhere[index]
                                 for index in sorted(self._held_elsewhere)]
        if self._abort_reason:
            result.errors.insert(0, self._abort_reason)
        return result

    @contextlib.contextmanager
    def _lease(self) -> Iterator[None]:
        """Renew this sender's lease on its chunks in flight while the shard is sent:
        one statement every third of the lease, whatever the number of requests."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.ledger.lease_s / 3):
                try:
                    self.ledger.renew_lease(self.campaign_id, self.shard, self.owner)
                except Exception as exc:  # the next renewal may succeed
                    log.warning("shard %d: could not renew the ledger lease: %s",
                                self.shard, exc)

        beat = threading.Thread(target=renew, name="sms-send-lease", daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()

    def _send_and_arrange(self, chunk: Chunk) -> tuple[ChunkRecord, SettledColumns | None]:
        try:
            record = self._send_chunk(chunk)
        except LedgerLockedError as exc:
            # every other chunk would meet the same lock: stop, and fail the run with it
            if self._ledger_error is None:
                self._ledger_error = exc
            self._abort.set()
            return self._unsent(chunk), None
        return record, settled_columns(chunk, record)

    def _unsent(self, chunk: Chunk) -> ChunkRecord:
        return ChunkRecord(self.campaign_id, self.shard, chunk.index, chunk.fingerprint,
                           len(chunk), PENDING, 0, None, None, time.time())

    def _send_chunk(self, chunk: Chunk) -> ChunkRecord:
        record: ChunkRecord | None = None
        for attempt in range(self.max_attempts):
            if self._abort.is_set():
                break
            go, record = self.ledger.begin_send(self.campaign_id, self.shard, chunk.index,
                                                chunk.fingerprint, len(chunk),
                                                owner=self.owner)
            if not go and record.state == INTENT:  # another sender has it on the wire
                go, record = self._await_other_sender(chunk, record)
            if not go:  # settled already, or ambiguous, or still the other sender's
                return record
            record, wait = self._attempt(chunk, record, attempt)
            if record.state != PENDING:
                return record
            if attempt + 1 < self.max_attempts and wait:
                self.sleep(wait)
        if self._ledger_error is not None:
            return self._unsent(chunk)
        return record or self.ledger.claim(self.campaign_id, self.shard, chunk.index,
                                           chunk.fingerprint, len(chunk), owner=self.owner)

    def _await_other_sender(self, chunk: Chunk, record: ChunkRecord
                            ) -> tuple[bool, ChunkRecord]:
        """Wait, bounded, for the sender that holds the chunk in flight.

        Each look goes through ``begin_send``, which acts on what it finds in one
        step: the other sender's outcome (used as ours), the chunk back to
        ``pending`` (sent by us now), or the other sender gone (ambiguous).
        """
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline and not self._abort.is_set():
            self.sleep(self.poll_s)
            go, record = self.ledger.begin_send(self.campaign_id, self.shard, chunk.index,
                                                chunk.fingerprint, len(chunk),
                                                owner=self.owner)
            if go or record.state != INTENT:
                return go, record
        holder = record.owner_identity
        self._held_elsewhere[chunk.index] = (
            f"chunk {chunk.index} is being sent by another sender of campaign "
            f"{self.campaign_id!r}: {holder.describe() if holder else 'unknown'}, whose lease "
            f"is live; waited {self.wait_s:g} s for its outcome. Nothing was sent twice: retry "
            "once that run has finished the chunk (its outcome is then used as is)")
        return False, record

    def _attempt(self, chunk: Chunk, record: ChunkRecord, attempt: int
                 ) -> tuple[ChunkRecord, float]:
        """One request for the chunk: the settled record and the wait before a retry."""
        finish = self.ledger.finish
        try:
            kwargs: dict[str, Any] = {}
            if self.template_id is not None:
                kwargs["template_id"] = self.template_id
            subs = self.client.send(chunk.messages, **kwargs)
        except RateLimitedError as exc:
            return finish(record, PENDING, error=str(exc)), max(exc.retry_after, 0.01)
        except RetryableError as exc:
            return finish(record, PENDING, error=str(exc)), self.backoff_s * 2 ** attempt
        except AmbiguousError as exc:
            return finish(record, AMBIGUOUS, error=str(exc)), 0
        except (AuthenticationError, InsufficientBalanceError) as exc:
            # Certainly not sent, and every other chunk would fail alike: stop.
            self._abort_reason = f"sending stopped: {exc}"
            self._abort.set()
            return finish(record, PENDING, error=str(exc)), 0
        except PermanentError as exc:
            outcome = _uniform(len(chunk), message_id=None, custom_id=chunk.custom_ids,
                               charge_items=0, vendor_code=exc.code or type(exc).__name__,
                               status=REJECTED, description=str(exc))
            return finish(record, REJECTED, outcome=outcome, error=str(exc)), 0
        except Exception as exc:
            # Unknown failure after the intent: the request may have left.
            finish(record, AMBIGUOUS, error=f"unexpected {type(exc).__name__}")
            raise
        if len(subs) != len(chunk):
            return finish(record, AMBIGUOUS, error=(
                f"vendor answered {len(subs)} results for {len(chunk)} "
                "recipients")), 0
        outcome = _outcome(subs)
        stored = _for_ledger(outcome)
        settled = finish(record, SENT, outcome=stored)
        # the worker builds the chunk's columns from the answer's own lists, cheaper
        # than from the stored form (a rerun reads the stored form back)
        return (replace(settled, outcome=outcome) if settled.outcome is stored
                else settled), 0


@dataclass(frozen=True)
class SettledColumns:
    """A settled chunk's outcome, ready to join the submissions table.

    Made by the worker that settled the chunk, while other requests are still
    out, so the table at the end is only put together. A column the chunk
    holds one value in stays that Python value: the table expands such values
    for all chunks in one step instead of an Arrow call per chunk and column.
    """

    outcome: dict[str, pa.Array | Any]  # OUTCOME_FIELDS; custom_id: the vendor's, else ours
    counts: dict[str, int]


def settled_columns(chunk: Chunk, record: ChunkRecord) -> SettledColumns | None:
    """The chunk's columns from its ledger record; None while its outcome is open."""
    if record.state not in FINAL_STATES:
        return None
    n = len(chunk)
    outcome = record.outcome or _uniform(
        n, message_id=None, custom_id=None, charge_items=0, vendor_code=None,
        status=AMBIGUOUS, description=record.last_error or "")
    columns = {name: (_outcome_array(value, n, name)
                      if isinstance(value, list | dict) else _description(name, value))
               for name, value in ((name, outcome.get(name)) for name in OUTCOME_FIELDS)}
    # the vendor's echo of our id where it gave one, else the id the request carried
    echoed = columns["custom_id"]
    if echoed is None:
        columns["custom_id"] = chunk.rows["custom_id"].combine_chunks()
    elif isinstance(echoed, pa.Array):
        columns["custom_id"] = pc.coalesce(echoed, chunk.rows["custom_id"].combine_chunks())
    status = outcome.get("status")
    counts = dict(Counter(status)) if isinstance(status, list) else {status: n}
    return SettledColumns(columns, counts)


def build_result(campaign_id: str, shard: int, chunks: Sequence[Chunk],
                 records: Sequence[ChunkRecord], *, conn_id: str = "", vendor: str = "",
                 settled: Sequence[SettledColumns | None] | None = None) -> ShardResult:
    """Submissions of every settled chunk: the plan's columns joined to the ledger's outcomes.

    Built chunk by chunk as Arrow arrays, a column the vendor answered alike
    for the whole chunk as one repeated value: no Python object per recipient.
    ``settled`` holds the chunks' columns where they were made already.
    """
    result = ShardResult()
    columns: dict[str, list[Any]] = {name: [] for name in OUTCOME_FIELDS}
    planned: dict[str, list[pa.Array]] = {"row_number": [], "mobile": []}
    chunk_index: list[int] = []
    stamps: list[int] = []
    sizes: list[int] = []
    counts: Counter[str] = Counter()
    for i, (chunk, rec) in enumerate(zip(chunks, records, strict=True)):
        done = (settled[i] if settled is not None else None) or settled_columns(chunk, rec)
        if done is None:
            result.unsent_chunks += 1
            if rec.last_error:
                result.errors.append(f"chunk {chunk.index}: {rec.last_error}")
            continue
        for name in OUTCOME_FIELDS:
            columns[name].append(done.outcome[name])
        for name, pieces in planned.items():
            pieces.extend(chunk.rows[name].chunks)
        counts.update(done.counts)
        chunk_index.append(chunk.index)
        stamps.append(int(rec.updated_at * 1000))
        sizes.append(len(chunk))
    total = sum(sizes)

    def column(name: str, pieces: list[pa.Array]) -> pa.ChunkedArray:
        return pa.chunked_array(pieces, SUBMISSION_SCHEMA.field(name).type)

    def constant(name: str, value: Any) -> pa.Array:
        return pa.repeat(pa.scalar(value, SUBMISSION_SCHEMA.field(name).type), total)

    result.counts = dict(counts)
    result.table = pa.table({
        "campaign_id": constant("campaign_id", campaign_id),
        "conn_id": constant("conn_id", conn_id), "vendor": constant("vendor", vendor),
        "shard": constant("shard", shard),
        "chunk": np.repeat(np.array(chunk_index, dtype=np.int32), sizes),
        **{name: column(name, pieces) for name, pieces in planned.items()},
        **{name: _expanded(pieces, sizes, SUBMISSION_SCHEMA.field(name).type)
           for name, pieces in columns.items()},
        "submitted_at": np.repeat(np.array(stamps, dtype=np.int64), sizes),
    }, schema=SUBMISSION_SCHEMA)
    return result


def _joined(parts: Sequence[ShardResult]) -> ShardResult:
    """Consecutive blocks' results as the one result of the shard."""
    counts: Counter[str] = Counter()
    for part in parts:
        counts.update(part.counts)
    return ShardResult(counts=dict(counts),
                       table=pa.concat_tables([part.table for part in parts
                                               if part.table is not None]),
                       unsent_chunks=sum(part.unsent_chunks for part in parts),
                       errors=[error for part in parts for error in part.errors])


def _outcome_array(values: list[Any] | dict[str, str], n: int, name: str) -> pa.Array:
    """A stored per-recipient outcome column of a chunk as Arrow (descriptions never
    null): a list, or a run of consecutive message ids."""
    if isinstance(values, dict):
        first = values[ID_RUN]
        numbers = pa.array(np.arange(int(first), int(first) + n, dtype=np.int64))
        return pc.utf8_lpad(pc.cast(numbers, pa.string()), len(first), "0")
    if name == "description":
        values = [value or "" for value in values]
    return pa.array(values, SUBMISSION_SCHEMA.field(name).type)


def _description(name: str, value: Any) -> Any:
    return (value or "") if name == "description" else value


def _expanded(pieces: list[pa.Array | Any], sizes: list[int], kind: pa.DataType
              ) -> pa.ChunkedArray:
    """The chunks' pieces of one column as one column: a piece that is a plain value
    stands for that value repeated over its chunk's rows. When every piece is one,
    the whole column is one ``take``, not an Arrow call per chunk."""
    if all(isinstance(piece, pa.Array) for piece in pieces):
        return pa.chunked_array(pieces, kind)
    if not any(isinstance(piece, pa.Array) for piece in pieces):
        runs = np.repeat(np.arange(len(pieces), dtype=np.int64), sizes)
        return pa.chunked_array([pa.array(pieces, kind).take(runs)], kind)
    return pa.chunked_array(
        [piece if isinstance(piece, pa.Array) else pa.repeat(pa.scalar(piece, kind), size)
         for piece, size in zip(pieces, sizes, strict=True)], kind)
