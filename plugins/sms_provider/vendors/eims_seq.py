"""EIMS md5 mode's ``seq``: a number above every one the account used before, and the
account's turn to use it.

Kept apart from the client because where the counter lives is a deployment choice
(a process, a file on one host, the ledger database across hosts), while the
protocol that consumes it is not.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from sms_provider.errors import PermanentError

VENDOR = "eims"


class SeqSource(ABC):
    """The md5 mode's ``seq`` for one account, and the account's turn to use it.

    The platform refuses a seq that is not above the last one it accepted, so
    handing out distinct increasing numbers is not enough: the requests must
    also reach it in that order. :meth:`turn` therefore hands out a seq *and*
    holds the account's turn until the block ends; the client keeps the block
    open until the platform has answered, so no other request sharing this
    source can take a seq, let alone overtake, meanwhile.

    A seq is consumed whether or not its request succeeds: a retry gets a new one.
    """

    @abstractmethod
    def turn(self) -> AbstractContextManager[int]:
        """A seq above every one handed out before; exclusive until the block ends."""

    def next(self) -> int:
        """A seq, with a turn that ends at once (for calls that need no ordering)."""
        with self.turn() as seq:
            return seq


class MemorySeqSource(SeqSource):
    """A counter in this process, starting at the current Unix time in seconds.

    A restarted process still moves forward unless the previous one averaged
    more than one request a second. Only the threads of one client share it:
    several processes sending for the account need a :class:`FileSeqSource`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = int(time.time()) - 1

    def __repr__(self) -> str:
        return "MemorySeqSource(path=None)"

    @contextmanager
    def turn(self) -> Iterator[int]:
        with self._lock:
            self._last += 1
            yield self._last


class FileSeqSource(SeqSource):
    """The last seq in a file, shared by every process of this host that names it.

    A turn holds an exclusive ``flock`` on the file (after a lock between this
    source's own threads) from reading the last seq until the block ends; the
    new seq is written and fsync'd before the block starts, so a crash cannot
    hand the same seq out twice. A missing or empty file starts at the current
    Unix time, so losing the file, or switching from the in-memory counter,
    still moves forward. ``flock`` orders processes of one host only: it is no
    lock across hosts, and not reliable on network file systems.
    """

    _WIDTH = 20  # fixed-width record: rewritten in place, never truncated

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FileSeqSource(path={str(self.path)!r})"

    @contextmanager
    def turn(self) -> Iterator[int]:
        path = self.path
        with self._lock:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise PermanentError(f"cannot open the seq file {path}: {exc.strerror}",
                                     vendor=VENDOR) from None
            try:
                yield self._advance(fd, path)
            finally:
                os.close(fd)  # closing releases the flock

    def _advance(self, fd: int, path: Path) -> int:
        """Take the file's lock and move its seq on by one; the lock stays held."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            if not text:
                last = int(time.time()) - 1
            elif text.isdigit():
                last = int(text)
            else:
                raise PermanentError(
                    f"seq file {path} does not hold a number; repair it with a value above "
                    "the last seq used", vendor=VENDOR)
            seq = last + 1
            os.pwrite(fd, f"{seq:0{self._WIDTH}d}\n".encode("ascii"), 0)
            os.fsync(fd)
            return seq
        except OSError as exc:
            raise PermanentError(f"cannot update the seq file {path}: {exc.strerror}",
                                 vendor=VENDOR) from None


def local_seq_source(path: str | os.PathLike[str] | None) -> SeqSource:
    """The seq file at ``path``, or an in-memory counter without one."""
    return MemorySeqSource() if path is None else FileSeqSource(path)
