"""The garbage collector held back while a shard is sent (see :func:`_fewer_collections`).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None


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
