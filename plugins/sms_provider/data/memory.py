"""The allocator prepare and reconciliation run with: memory they free goes back to the
system.

A big campaign's prepare or reconciliation allocates and frees large Arrow buffers step
after step (the accounts, the per-recipient figures, two slices of the
per-recipient table at a time). Arrow's default pool keeps freed pages for
reuse, so the process's peak RSS is the sum of steps that never overlap, not
the largest of them. Jemalloc with no decay returns each freed page at once.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache

import pyarrow as pa

#: Arrow's own setting for its jemalloc pool (ms before freed pages go back), restored after
ARROW_JEMALLOC_DECAY_MS = 1000


@contextmanager
def returned_memory() -> Iterator[None]:
    """Run the block with Arrow's jemalloc pool returning freed pages at once (where this
    Arrow build has jemalloc; else the default pool, released after the block)."""
    previous = pa.default_memory_pool()
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # a build without jemalloc: the default pool, released after
        try:
            yield
        finally:
            release()
        return
    pa.jemalloc_set_decay_ms(0)
    pa.set_memory_pool(pool)  # the same pool already where jemalloc is the default
    try:
        yield
    finally:
        pa.set_memory_pool(previous)
        pa.jemalloc_set_decay_ms(ARROW_JEMALLOC_DECAY_MS)
        release()


def release() -> None:
    """Give the pages freed so far back to the system (between big steps): Arrow's, and
    the C heap's, where NumPy's arrays below glibc's mmap threshold live (freed, they
    stay in the process until trimmed)."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):
        return None
