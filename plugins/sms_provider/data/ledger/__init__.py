"""The send ledger: each chunk's intent is durable before its request goes out.

A chunk moves through these states::

    pending --(intent committed)--> intent --(answer)--> sent | rejected
                                           \\--(retryable error)--> pending
                                           \\--(answer lost)-------> ambiguous

Only ``pending`` chunks are ever sent. An intent records its owner (the
sender: task instance and try, host, process) and a lease the live sender
renews. A sender that finds a chunk in ``intent`` asks whether its owner is
certainly gone: an earlier try of the same task, a process on this machine
that no longer runs, or a lease that ran out. Then the request may be on the
wire with nobody left to hear the answer: the chunk becomes ``ambiguous`` and
is never resent; delivery reports settle it later by custom id. While the
owner may still be sending, the chunk is left alone: the finder waits for its
outcome (see ``sms_provider.data.send.sender``). Every change of state is a
compare-and-set on the row, so two senders never both send one chunk and never
overwrite each other's outcome.

The ledger is any SQLAlchemy URL: an SQLite file under the data root by
default, PostgreSQL for deployments with several workers.

The package, by concept:

- :mod:`.states`: :class:`ChunkState` (a chunk request's state), the errors, :class:`ChunkRecord`
- :mod:`.owners`: :class:`SenderIdentity`, who holds an intent and whether it is gone
- :mod:`.schema`: the table and the statements every request runs
- :mod:`.dialects`: SQLite versus PostgreSQL (engines, pragmas, lock errors, write turns)
- :mod:`.moves`: :class:`SendLedger`, the compare-and-set moves between states
"""

from sms_provider.data.ledger.dialects import default_url
from sms_provider.data.ledger.moves import SendLedger
from sms_provider.data.ledger.owners import SenderIdentity
from sms_provider.data.ledger.schema import chunks_table
from sms_provider.data.ledger.states import (
    FINAL_STATES,
    LEASE_S,
    LOCK_TIMEOUT_S,
    ChunkRecord,
    ChunkState,
    LedgerLockedError,
    LedgerMismatchError,
)

#: the bare names older code imported; new code says ``ChunkState.PENDING`` so that a
#: ledger state cannot be read as a submission status or a reconcile status
PENDING, INTENT, SENT, REJECTED, AMBIGUOUS = (
    ChunkState.PENDING, ChunkState.INTENT, ChunkState.SENT, ChunkState.REJECTED,
    ChunkState.AMBIGUOUS)

__all__ = [
    "AMBIGUOUS",
    "FINAL_STATES",
    "INTENT",
    "LEASE_S",
    "LOCK_TIMEOUT_S",
    "PENDING",
    "REJECTED",
    "SENT",
    "ChunkRecord",
    "ChunkState",
    "LedgerLockedError",
    "LedgerMismatchError",
    "SendLedger",
    "SenderIdentity",
    "chunks_table",
    "default_url",
]
