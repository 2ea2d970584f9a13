"""The request loop: each chunk through the ledger, retries, waits and stops.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pyarrow as pa

from sms_provider.data.ledger import (
    ChunkRecord,
    ChunkState,
    LedgerLockedError,
    SenderIdentity,
    SendLedger,
)
from sms_provider.data.send.chunks import Chunk, iter_chunks
from sms_provider.data.send.gc_pause import _fewer_collections
from sms_provider.data.send.outcomes import (
    SettledColumns,
    ShardResult,
    _for_ledger,
    _joined,
    _outcome,
    _uniform,
    build_result,
    settled_columns,
)
from sms_provider.errors import (
    AmbiguousError,
    AuthenticationError,
    InsufficientBalanceError,
    PermanentError,
    RateLimitedError,
    RetryableError,
)
from sms_provider.models import SubmissionStatus
from sms_provider.vendors.base import VendorClient

log = logging.getLogger(__name__)


#: chunks whose part of the submissions table is built at once while a shard is sent
RESULT_BLOCK_CHUNKS = 64


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
                           len(chunk), ChunkState.PENDING, 0, None, None, time.time())

    def _send_chunk(self, chunk: Chunk) -> ChunkRecord:
        record: ChunkRecord | None = None
        for attempt in range(self.max_attempts):
            if self._abort.is_set():
                break
            go, record = self.ledger.begin_send(self.campaign_id, self.shard, chunk.index,
                                                chunk.fingerprint, len(chunk),
                                                owner=self.owner)
            if not go and record.state == ChunkState.INTENT:  # another sender has it on the wire
                go, record = self._await_other_sender(chunk, record)
            if not go:  # settled already, or ambiguous, or still the other sender's
                return record
            record, wait = self._attempt(chunk, record, attempt)
            if record.state != ChunkState.PENDING:
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
            if go or record.state != ChunkState.INTENT:
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
            return finish(record, ChunkState.PENDING, error=str(exc)), max(exc.retry_after, 0.01)
        except RetryableError as exc:
            return finish(record, ChunkState.PENDING, error=str(exc)), self.backoff_s * 2 ** attempt
        except AmbiguousError as exc:
            return finish(record, ChunkState.AMBIGUOUS, error=str(exc)), 0
        except (AuthenticationError, InsufficientBalanceError) as exc:
            # Certainly not sent, and every other chunk would fail alike: stop.
            self._abort_reason = f"sending stopped: {exc}"
            self._abort.set()
            return finish(record, ChunkState.PENDING, error=str(exc)), 0
        except PermanentError as exc:
            outcome = _uniform(len(chunk), message_id=None, custom_id=chunk.custom_ids,
                               charge_items=0, vendor_code=exc.code or type(exc).__name__,
                               status=SubmissionStatus.REJECTED.value, description=str(exc))
            return finish(record, ChunkState.REJECTED, outcome=outcome, error=str(exc)), 0
        except Exception as exc:
            # Unknown failure after the intent: the request may have left.
            finish(record, ChunkState.AMBIGUOUS, error=f"unexpected {type(exc).__name__}")
            raise
        if len(subs) != len(chunk):
            return finish(record, ChunkState.AMBIGUOUS, error=(
                f"vendor answered {len(subs)} results for {len(chunk)} "
                "recipients")), 0
        outcome = _outcome(subs)
        stored = _for_ledger(outcome)
        settled = finish(record, ChunkState.SENT, outcome=stored)
        # the worker builds the chunk's columns from the answer's own lists, cheaper
        # than from the stored form (a rerun reads the stored form back)
        return (replace(settled, outcome=outcome) if settled.outcome is stored
                else settled), 0
