"""Send one shard exactly once, whatever happened to earlier attempts.

The shard is cut into chunks deterministically (same prepared rows, same
chunks), each chunk goes through the ledger (intent before the request,
outcome after), and the submissions are rebuilt from the ledger, so a rerun
after a retry, a clear or a SIGKILL produces the same file and sends only
what certainly has not been sent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from sms_provider.data.ledger import (
    AMBIGUOUS,
    FINAL_STATES,
    PENDING,
    REJECTED,
    SENT,
    ChunkRecord,
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
from sms_provider.vendors.base import OutboundMessage, VendorClient

log = logging.getLogger(__name__)

class SendAborted(RuntimeError):
    """Sending cannot go on (credentials, balance): a person must act, then rerun."""


@dataclass(frozen=True)
class Chunk:
    index: int
    row_numbers: list[int]
    messages: list[OutboundMessage]
    fingerprint: str


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
    rows = table.sort_by("row_number").to_pydict()
    n = len(rows["row_number"])
    variables = rows.get("variables") or [None] * n
    contents = rows.get("content") or [""] * n
    custom_ids = rows.get("custom_id") or [None] * n
    if personalised:
        groups = [list(range(n))]
    else:
        by_content: dict[str, list[int]] = {}
        for i, content in enumerate(contents):
            by_content.setdefault(content, []).append(i)
        groups = list(by_content.values())
    chunks: list[Chunk] = []
    for group in groups:
        for start in range(0, len(group), max_batch):
            index = len(chunks)
            picked = group[start:start + max_batch]
            ref = (request_reference(campaign_id, shard, index)
                   if custom_id_scope == "request" else None)
            messages = [OutboundMessage(
                mobile=rows["mobile"][i], content=contents[i] or "",
                custom_id=(ref if custom_id_scope == "request" else
                           custom_ids[i] if custom_id_scope == "message" else None),
                variables=json.loads(variables[i]) if variables[i] else None) for i in picked]
            digest = hashlib.sha256()
            for i, m in zip(picked, messages, strict=True):
                digest.update(f"{rows['row_number'][i]}\t{m.mobile}\t{m.content}\t{m.custom_id}"
                              f"\t{variables[i]}\n".encode())
            chunks.append(Chunk(index, [rows["row_number"][i] for i in picked], messages,
                                digest.hexdigest()[:32]))
    return chunks


class ShardSender:
    """Sends the chunks of one shard through the ledger with bounded concurrency."""

    def __init__(self, client: VendorClient, ledger: SendLedger, campaign_id: str, shard: int,
                 *, conn_id: str = "", template_id: str | None = None, template_text: str | None = None,
                 concurrency: int = 4, max_attempts: int = 3, backoff_s: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.ledger = ledger
        self.campaign_id = campaign_id
        self.conn_id = conn_id
        self.shard = shard
        self.template_id = template_id
        self.template_text = template_text
        self.concurrency = max(1, concurrency)
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.sleep = sleep
        self._abort = threading.Event()
        self._abort_reason: str | None = None

    def plan(self, table: pa.Table) -> list[Chunk]:
        return plan_chunks(table, campaign_id=self.campaign_id, shard=self.shard,
                           max_batch=self.client.max_batch,
                           personalised=self.client.personalised_batches,
                           custom_id_scope=self.client.custom_id_scope)

    def run(self, table: pa.Table) -> ShardResult:
        chunks = self.plan(table)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="sms-send") as pool:
            records = list(pool.map(self._send_chunk, chunks))
        result = build_result(self.campaign_id, self.shard, chunks, records,
                              conn_id=self.conn_id, vendor=self.client.vendor)
        if self._abort_reason:
            result.errors.insert(0, self._abort_reason)
        return result

    def _send_chunk(self, chunk: Chunk) -> ChunkRecord:
        ledger, key = self.ledger, (self.campaign_id, self.shard, chunk.index)
        record = ledger.claim(*key, chunk.fingerprint, len(chunk.messages))
        for attempt in range(self.max_attempts):
            if record.state in FINAL_STATES or self._abort.is_set():
                return record
            if not ledger.begin_send(*key):  # another worker holds it: never send it too
                return ledger.claim(*key, chunk.fingerprint, len(chunk.messages))
            wait = self._attempt(chunk, key, attempt)
            record = ledger.claim(*key, chunk.fingerprint, len(chunk.messages))
            if record.state == PENDING and attempt + 1 < self.max_attempts and wait:
                self.sleep(wait)
        return record

    def _attempt(self, chunk: Chunk, key: tuple[str, int, int], attempt: int) -> float:
        """One request for the chunk; returns the wait before a retry (0 = none)."""
        try:
            kwargs: dict[str, Any] = {}
            if self.template_id is not None:
                kwargs["template_id"] = self.template_id
            subs = self.client.send(chunk.messages, **kwargs)
        except RateLimitedError as exc:
            self.ledger.finish(*key, PENDING, error=str(exc))
            return max(exc.retry_after, 0.01)
        except RetryableError as exc:
            self.ledger.finish(*key, PENDING, error=str(exc))
            return self.backoff_s * 2 ** attempt
        except AmbiguousError as exc:
            self.ledger.finish(*key, AMBIGUOUS, error=str(exc))
            return 0
        except (AuthenticationError, InsufficientBalanceError) as exc:
            # Certainly not sent, and every other chunk would fail alike: stop.
            self.ledger.finish(*key, PENDING, error=str(exc))
            self._abort_reason = f"sending stopped: {exc}"
            self._abort.set()
            return 0
        except PermanentError as exc:
            outcome = [[None, m.custom_id, 0, exc.code or type(exc).__name__, REJECTED, str(exc)]
                       for m in chunk.messages]
            self.ledger.finish(*key, REJECTED, outcome=outcome, error=str(exc))
            return 0
        except Exception as exc:
            # Unknown failure after the intent: the request may have left.
            self.ledger.finish(*key, AMBIGUOUS, error=f"unexpected {type(exc).__name__}")
            raise
        if len(subs) != len(chunk.messages):
            self.ledger.finish(*key, AMBIGUOUS, error=(
                f"vendor answered {len(subs)} results for {len(chunk.messages)} recipients"))
            return 0
        outcome = [[s.message_id, s.custom_id, s.charge_items, s.vendor_code, s.status.value,
                    s.description] for s in subs]
        self.ledger.finish(*key, SENT, outcome=outcome)
        return 0


def build_result(campaign_id: str, shard: int, chunks: Sequence[Chunk],
                 records: Sequence[ChunkRecord], *, conn_id: str = "", vendor: str = ""
                 ) -> ShardResult:
    """Submissions of every settled chunk, from the ledger's outcomes."""
    cols: dict[str, list[Any]] = {name: [] for name in SUBMISSION_SCHEMA.names}
    result = ShardResult()
    for chunk, rec in zip(chunks, records, strict=True):
        if rec.state not in FINAL_STATES:
            result.unsent_chunks += 1
            if rec.last_error:
                result.errors.append(f"chunk {chunk.index}: {rec.last_error}")
            continue
        outcome = rec.outcome or [[None, m.custom_id, 0, None, AMBIGUOUS, rec.last_error or ""]
                                  for m in chunk.messages]
        for row_number, msg, out in zip(chunk.row_numbers, chunk.messages, outcome, strict=True):
            message_id, custom_id, items, code, status, description = out
            cols["campaign_id"].append(campaign_id)
            cols["conn_id"].append(conn_id)
            cols["vendor"].append(vendor)
            cols["shard"].append(shard)
            cols["chunk"].append(chunk.index)
            cols["row_number"].append(row_number)
            cols["mobile"].append(msg.mobile)
            cols["message_id"].append(message_id)
            cols["custom_id"].append(custom_id if custom_id is not None else msg.custom_id)
            cols["charge_items"].append(items)
            cols["vendor_code"].append(code)
            cols["status"].append(status)
            cols["description"].append(description or "")
            cols["submitted_at"].append(int(rec.updated_at * 1000))
            result.counts[status] = result.counts.get(status, 0) + 1
    result.table = pa.table(cols, schema=SUBMISSION_SCHEMA)
    return result
