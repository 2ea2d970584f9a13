"""A send ledger kept in a dict, so ``bench/send.py`` can show the ledger's share of a send.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from sms_provider.data.ledger import (
    LEASE_S,
    ChunkRecord,
    ChunkState,
    SenderIdentity,
    SendLedger,
)


class MemoryLedger(SendLedger):
    """The ledger's claim / begin_send / finish in a dict: no SQL, no JSON, no disk.

    Exists so the send path can run once without its ledger cost and the gap
    to the file run gives the ledger's share (``sqlite://`` cannot: each thread
    would get its own empty database).
    """

    lease_s = LEASE_S

    def __init__(self) -> None:  # no engine on purpose
        self.url = "memory"
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, int, int], ChunkRecord] = {}

    def __repr__(self) -> str:
        return "MemoryLedger()"

    def close(self) -> None:
        self._rows.clear()

    def renew_lease(self, campaign_id: str, shard: int, owner: SenderIdentity) -> int:
        return 0  # one process, no other sender to keep out

    def claim(self, campaign_id: str, shard: int, chunk: int, fingerprint: str,
              recipients: int, *, owner: SenderIdentity | None = None) -> ChunkRecord:
        key = (campaign_id, shard, chunk)
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                row = self._rows[key] = ChunkRecord(campaign_id, shard, chunk, fingerprint,
                                                    recipients, ChunkState.PENDING, 0, None, None,
                                                    time.time())
            return row

    def begin_send(self, campaign_id: str, shard: int, chunk: int, fingerprint: str,
                   recipients: int, *, owner: SenderIdentity | None = None
                   ) -> tuple[bool, ChunkRecord]:
        key = (campaign_id, shard, chunk)
        with self._lock:
            row = self._rows.get(key) or ChunkRecord(campaign_id, shard, chunk, fingerprint,
                                                     recipients, ChunkState.PENDING, 0, None, None,
                                                     time.time())
            if row.state != ChunkState.PENDING:
                return False, row
            row = self._rows[key] = dataclasses.replace(
                row, state=ChunkState.INTENT, attempts=row.attempts + 1, updated_at=time.time())
            return True, row

    def finish(self, record: ChunkRecord, state: str, *, outcome: Any = None,
               error: str | None = None) -> ChunkRecord:
        key = (record.campaign_id, record.shard, record.chunk)
        with self._lock:
            row = self._rows[key]
            if row.state == ChunkState.INTENT:
                row = self._rows[key] = dataclasses.replace(
                    row, state=state, outcome=outcome, last_error=error,
                    updated_at=time.time())
            return row
