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
from collections.abc import Callable, Iterator, Sequence
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
    return list(iter_chunks(table, campaign_id=campaign_id, shard=shard, max_batch=max_batch,
                            personalised=personalised, custom_id_scope=custom_id_scope))


def iter_chunks(table: pa.Table, *, campaign_id: str, shard: int, max_batch: int,
                personalised: bool, custom_id_scope: str | None) -> Iterator[Chunk]:
    """:func:`plan_chunks` one chunk at a time, so sending starts before planning ends."""
    table = table.sort_by("row_number")
    n = table.num_rows

    def column(name: str, default: Any) -> list[Any]:
        return table[name].to_pylist() if name in table.column_names else [default] * n

    row_numbers, mobiles = column("row_number", None), column("mobile", None)
    contents, variables = column("content", ""), column("variables", None)
    custom_ids = column("custom_id", None)
    if personalised:
        groups = [list(range(n))]
    else:
        by_content: dict[str, list[int]] = {}
        for i, content in enumerate(contents):
            by_content.setdefault(content, []).append(i)
        groups = list(by_content.values())
    index = -1
    for group in groups:
        for start in range(0, len(group), max_batch):
            index += 1
            picked = group[start:start + max_batch]
            if custom_id_scope == "request":
                ref = request_reference(campaign_id, shard, index)
                ids: list[str | None] = [ref] * len(picked)
            elif custom_id_scope == "message":
                ids = [custom_ids[i] for i in picked]
            else:
                ids = [None] * len(picked)
            messages = [OutboundMessage(mobiles[i], contents[i] or "", cid,
                                        json.loads(variables[i]) if variables[i] else None)
                        for i, cid in zip(picked, ids, strict=True)]
            text = "\n".join(f"{row_numbers[i]}\t{mobiles[i]}\t{contents[i]}\t{cid}\t"
                             f"{variables[i]}" for i, cid in zip(picked, ids, strict=True))
            yield Chunk(index, [row_numbers[i] for i in picked], messages,
                        hashlib.sha256(text.encode()).hexdigest()[:32])


OUTCOME_FIELDS = ("message_id", "custom_id", "charge_items", "vendor_code", "status",
                  "description")


def _outcome(subs: Sequence[Any]) -> dict[str, list[Any]]:
    """Per recipient, by column: what the ledger keeps of a settled chunk."""
    return {"message_id": [s.message_id for s in subs],
            "custom_id": [s.custom_id for s in subs],
            "charge_items": [s.charge_items for s in subs],
            "vendor_code": [s.vendor_code for s in subs],
            "status": [s.status.value for s in subs],
            "description": [s.description for s in subs]}


def _uniform(n: int, **values: Any) -> dict[str, list[Any]]:
    return {name: list(values[name]) if isinstance(values[name], list)
            else [values[name]] * n for name in OUTCOME_FIELDS}


class ShardSender:
    """Sends the chunks of one shard through the ledger with bounded concurrency."""

    def __init__(self, client: VendorClient, ledger: SendLedger, campaign_id: str, shard: int,
                 *, conn_id: str = "", template_id: str | None = None,
                 concurrency: int = 4,
                 max_attempts: int = 3, backoff_s: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
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
        self._abort = threading.Event()
        self._abort_reason: str | None = None

    def plan(self, table: pa.Table) -> Iterator[Chunk]:
        return iter_chunks(table, campaign_id=self.campaign_id, shard=self.shard,
                           max_batch=self.client.max_batch,
                           personalised=self.client.personalised_batches,
                           custom_id_scope=self.client.custom_id_scope)

    def run(self, table: pa.Table) -> ShardResult:
        chunks: list[Chunk] = []
        futures = []
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="sms-send") as pool:
            for chunk in self.plan(table):  # the first requests leave while planning goes on
                chunks.append(chunk)
                futures.append(pool.submit(self._send_chunk, chunk))
            records = [f.result() for f in futures]
        result = build_result(self.campaign_id, self.shard, chunks, records,
                              conn_id=self.conn_id, vendor=self.client.vendor)
        if self._abort_reason:
            result.errors.insert(0, self._abort_reason)
        return result

    def _send_chunk(self, chunk: Chunk) -> ChunkRecord:
        record: ChunkRecord | None = None
        for attempt in range(self.max_attempts):
            if self._abort.is_set():
                break
            go, record = self.ledger.begin_send(self.campaign_id, self.shard, chunk.index,
                                                chunk.fingerprint, len(chunk.messages))
            if not go:  # settled already, ambiguous, or another worker holds it
                return record
            record, wait = self._attempt(chunk, record, attempt)
            if record.state != PENDING:
                return record
            if attempt + 1 < self.max_attempts and wait:
                self.sleep(wait)
        return record or self.ledger.claim(self.campaign_id, self.shard, chunk.index,
                                           chunk.fingerprint, len(chunk.messages))

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
            n = len(chunk.messages)
            outcome = _uniform(n, message_id=None,
                               custom_id=[m.custom_id for m in chunk.messages],
                               charge_items=0, vendor_code=exc.code or type(exc).__name__,
                               status=REJECTED, description=str(exc))
            return finish(record, REJECTED, outcome=outcome, error=str(exc)), 0
        except Exception as exc:
            # Unknown failure after the intent: the request may have left.
            finish(record, AMBIGUOUS, error=f"unexpected {type(exc).__name__}")
            raise
        if len(subs) != len(chunk.messages):
            return finish(record, AMBIGUOUS, error=(
                f"vendor answered {len(subs)} results for {len(chunk.messages)} "
                "recipients")), 0
        return finish(record, SENT, outcome=_outcome(subs)), 0


def build_result(campaign_id: str, shard: int, chunks: Sequence[Chunk],
                 records: Sequence[ChunkRecord], *, conn_id: str = "", vendor: str = ""
                 ) -> ShardResult:
    """Submissions of every settled chunk, from the ledger's outcomes, column by column."""
    cols: dict[str, list[Any]] = {name: [] for name in SUBMISSION_SCHEMA.names}
    result = ShardResult()
    for chunk, rec in zip(chunks, records, strict=True):
        n = len(chunk.messages)
        if rec.state not in FINAL_STATES:
            result.unsent_chunks += 1
            if rec.last_error:
                result.errors.append(f"chunk {chunk.index}: {rec.last_error}")
            continue
        outcome = rec.outcome or _uniform(
            n, message_id=None, custom_id=[m.custom_id for m in chunk.messages],
            charge_items=0, vendor_code=None, status=AMBIGUOUS,
            description=rec.last_error or "")
        for name in ("campaign_id", "conn_id", "vendor", "shard", "chunk", "submitted_at"):
            value = {"campaign_id": campaign_id, "conn_id": conn_id, "vendor": vendor,
                     "shard": shard, "chunk": chunk.index,
                     "submitted_at": int(rec.updated_at * 1000)}[name]
            cols[name].extend([value] * n)
        cols["row_number"].extend(chunk.row_numbers)
        cols["mobile"].extend(m.mobile for m in chunk.messages)
        cols["custom_id"].extend(
            got if got is not None else m.custom_id
            for got, m in zip(outcome["custom_id"], chunk.messages, strict=True))
        for name in ("message_id", "charge_items", "vendor_code", "status"):
            cols[name].extend(outcome[name])
        cols["description"].extend(d or "" for d in outcome["description"])
        for status in outcome["status"]:
            result.counts[status] = result.counts.get(status, 0) + 1
    result.table = pa.table(cols, schema=SUBMISSION_SCHEMA)
    return result
