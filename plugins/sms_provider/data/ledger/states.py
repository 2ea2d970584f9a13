"""The ledger's chunk states, its errors and the record of one chunk.

These are states of a chunk's *request* in the send ledger, not the per-recipient
submission statuses of ``sms_provider.models`` nor reconcile's outcome statuses.
"""


from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sms_provider.data.ledger.owners import SenderIdentity

PENDING, INTENT, SENT, REJECTED, AMBIGUOUS = "pending", "intent", "sent", "rejected", "ambiguous"
FINAL_STATES = frozenset({SENT, REJECTED, AMBIGUOUS})
#: a pending chunk whose recipients failover gave to another connection (see
#: ``sms_provider.data.failover``): never sent through this shard's connection
MOVED = "moved"

#: seconds a sender's claim on its chunks in flight lasts unless renewed; senders renew
#: it every third of that (once per shard, not per request)
LEASE_S = 30.0
#: seconds a statement waits for another connection's write lock before giving up
LOCK_TIMEOUT_S = 30.0


class LedgerMismatchError(RuntimeError):
    """A chunk's recipients differ from what the ledger recorded for it earlier.

    Raised instead of sending: the prepared data changed under a partly sent
    campaign, and continuing could send someone twice.
    """


class LedgerLockedError(RuntimeError):
    """Another connection held a lock on the ledger for longer than the ledger waits.

    Retryable: nothing is sent without its intent committed, so a later try
    sends only what certainly was not sent.
    """

    retryable = True


@dataclass(frozen=True)
class ChunkRecord:
    campaign_id: str
    shard: int
    chunk: int
    fingerprint: str
    recipients: int
    state: str
    attempts: int
    last_error: str | None
    outcome: Any  # per recipient, by column: see sms_provider.data.send.outcomes
    updated_at: float
    owner: str | None = None  # the latest intent's SenderIdentity, as stored
    lease_until: float | None = None

    @property
    def owner_identity(self) -> SenderIdentity | None:
        return SenderIdentity.from_json(self.owner)
