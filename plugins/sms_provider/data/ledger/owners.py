"""Who holds a chunk's intent, and whether that sender can still be sending it.

An intent records its owner; a later sender asks the owner's identity whether it is an
earlier try of its own task or a process on this machine that runs no more.
"""


from __future__ import annotations

import dataclasses
import functools
import json
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SenderIdentity:
    """Who wrote an intent: enough to tell, later, whether it can still be sending.

    ``task`` is ``dag_id/run_id/task_id/map_index`` when the sender runs as an
    Airflow task (``attempt`` its try number); ``machine`` names the host, its
    boot and its process namespace, so a process id is only checked where it
    means the same process.
    """

    sender: str
    host: str
    pid: int
    machine: str
    started: str | None = None  # the process's start time, against pid reuse
    task: str | None = None
    attempt: int | None = None

    @classmethod
    def current(cls, task: str | None = None, attempt: int | None = None) -> SenderIdentity:
        """A new sender in this process (each run of a shard is a sender of its own)."""
        pid = os.getpid()
        return cls(uuid.uuid4().hex[:16], socket.gethostname(), pid, _machine(),
                   _process_start(pid), task, attempt)

    def to_json(self) -> str:
        return self._stored

    @functools.cached_property
    def _stored(self) -> str:  # made once: every intent of the sender stores it
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> SenderIdentity | None:
        """The stored owner; None for none or one this release cannot read."""
        if not text:
            return None
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError):
            return None

    def describe(self) -> str:
        where = f"host {self.host}, pid {self.pid}"
        if self.task:
            return f"task {self.task} try {self.attempt} ({where})"
        return f"sender {self.sender} ({where})"

    def earlier_try_of(self, other: SenderIdentity) -> bool:
        """True when this is an earlier try of ``other``'s task instance (it was given up)."""
        return bool(self.task and self.task == other.task and self.attempt is not None
                    and other.attempt is not None and self.attempt < other.attempt)

    def process_gone(self) -> bool:
        """True when this identity's process certainly runs no more (checked on its own
        machine only; elsewhere only the lease can tell)."""
        if self.machine != _machine():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # it runs, as another user
        stat = _proc_stat(self.pid)
        if stat is None:
            return False
        state, started = stat
        return state in ("Z", "X") or (self.started is not None and started != self.started)


@functools.cache
def _machine() -> str:
    """This host, its boot and this process namespace: where process ids are comparable."""
    parts = [socket.gethostname()]
    for read in (lambda: Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
                 lambda: os.readlink("/proc/self/ns/pid")):
        try:
            parts.append(read())
        except OSError:
            parts.append("")
    return "|".join(parts)


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """A process's state letter and start time (clock ticks since boot), from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _process_start(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None
