"""The ledger's chunk states, its errors and the record of one chunk.

A :class:`ChunkState` is the state of one chunk's *request* in the send ledger
(lower-case words in the ``state`` column of ``sms_send_chunks``). It is not a
recipient's :class:`~sms_provider.models.SubmissionStatus` (what a submission row
says: ``submitted``/``rejected``/``ambiguous``/``dry_run``), nor reconcile's
:class:`~sms_provider.data.reconcile.statuses.FinalStatus` (``PENDING`` there means
"no final delivery report yet", ``REJECTED`` "the vendor refused the number"). A
ledger ``pending`` chunk is one whose request has not certainly gone out yet.
"""


from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from sms_provider.data.ledger.owners import SenderIdentity


class ChunkState(enum.StrEnum):
    """Where one chunk's request stands in the send ledger (see the package docstring).

    A ``StrEnum``: the ledger stores and compares the plain words, so a state read
    back from the database equals its member.
    """

    #: not certainly sent: the only state a sender may send from
    PENDING = "pending"
    #: the intent is committed and the request may be on the wire
    INTENT = "intent"
    #: the vendor answered: the outcome holds each recipient's submission
    SENT = "sent"
    #: the vendor refused the whole request: never sent, never resent
    REJECTED = "rejected"
    #: the request may have gone out and nobody heard the answer: never resent,
    #: delivery reports settle it
    AMBIGUOUS = "ambiguous"


#: states a chunk never leaves by sending again
FINAL_STATES = frozenset({ChunkState.SENT, ChunkState.REJECTED, ChunkState.AMBIGUOUS})

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
    """One chunk's row of the ledger."""

    campaign_id: str
    shard: int
    chunk: int
    fingerprint: str
    recipients: int
    state: ChunkState
    attempts: int
    last_error: str | None
    outcome: Any  # per recipient, by column: see sms_provider.data.send.outcomes
    updated_at: float
    owner: str | None = None  # the latest intent's SenderIdentity, as stored
    lease_until: float | None = None

    @property
    def owner_identity(self) -> SenderIdentity | None:
        return SenderIdentity.from_json(self.owner)
