"""Send one shard exactly once, whatever happened to earlier attempts.

The shard is cut into chunks deterministically (same prepared rows, same
chunks), each chunk goes through the ledger (intent before the request,
outcome after), and the submissions are rebuilt from the ledger, so a rerun
after a retry, a clear or a SIGKILL produces the same file and sends only
what certainly has not been sent.

The package, by concept:

- :mod:`.chunks`: cutting a shard into requests, fingerprints, per-request custom ids
- :mod:`.sender`: :class:`ShardSender`, the request loop through the ledger
- :mod:`.outcomes`: what the ledger keeps of an answer, and the submissions table
- :mod:`.gc_pause`: the garbage collector held back while a shard is sent
"""

from sms_provider.data.send.chunks import Chunk, iter_chunks, plan_chunks, request_reference
from sms_provider.data.send.gc_pause import SENDING_GC_THRESHOLD
from sms_provider.data.send.outcomes import (
    ID_RUN,
    OUTCOME_FIELDS,
    SettledColumns,
    ShardResult,
    _for_ledger,
    _outcome,
    build_result,
    settled_columns,
)
from sms_provider.data.send.sender import RESULT_BLOCK_CHUNKS, ShardSender

__all__ = [
    "ID_RUN",
    "OUTCOME_FIELDS",
    "RESULT_BLOCK_CHUNKS",
    "SENDING_GC_THRESHOLD",
    "Chunk",
    "SettledColumns",
    "ShardResult",
    "ShardSender",
    "_for_ledger",
    "_outcome",
    "build_result",
    "iter_chunks",
    "plan_chunks",
    "request_reference",
    "settled_columns",
]
