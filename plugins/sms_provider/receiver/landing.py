"""Durable landing of pushed requests: the answer may only go out once they are on disk.

Each accepted request becomes one small JSON file (a
:class:`~sms_provider.receiver.records.LandingRecord`), written to a temporary
name, fsync'd, renamed and the folder fsync'd: after a crash either the whole
file is there or the vendor never got its 2xx and pushes again.
:mod:`sms_provider.receiver.compaction` moves the files into Parquet.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from sms_provider.data.storage import DataRoot

# the Airflow delivery task imports ``compact`` from here, where it lived before
# compaction had a module of its own
from sms_provider.receiver.compaction import CompactResult, compact  # noqa: F401
from sms_provider.receiver.records import (
    LANDING,
    PARTS,
    TMP_SUFFIX,
    LandingRecord,
    fsync_dir,
    landing_name,
)


class Lander:
    """Writes landing files; ``durable=False`` skips the fsyncs (benchmark comparison only)."""

    def __init__(self, root: DataRoot, *, durable: bool = True) -> None:
        self.root = root
        self.durable = durable
        self._dirs: set[str] = set()

    def land(self, record: LandingRecord, *, part: bool = False) -> str:
        """Write one record; returns its path once it is durable."""
        parts = (LANDING, record.conn_id, record.kind, PARTS if part else "")
        name = landing_name(record.received_at)
        data = record.to_json()
        if self.root.is_local:
            folder = self.root.local_path(*parts)
            self._ensure_dir(folder)
            try:
                return str(self._write_local(folder, name, data))
            except FileNotFoundError:  # the folder was removed under us: make it again
                self._dirs.discard(str(folder))
                self._ensure_dir(folder)
                return str(self._write_local(folder, name, data))
        path = self.root.path(*parts, name)
        if path.rsplit("/", 1)[0] not in self._dirs:
            self.root.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            self._dirs.add(path.rsplit("/", 1)[0])
        with self.root.fs.open_output_stream(path) as out:  # an object PUT is atomic
            out.write(data)
        return path

    def probe(self) -> None:
        """Write, sync and remove a small file in the landing folder; OSError if we cannot.

        The probe's name is a hidden temporary one, so a probe left behind by a crash
        is removed by compaction like any unacknowledged write.
        """
        name = f"probe-{uuid.uuid4().hex}"
        if not self.root.is_local:
            path = self.root.path(LANDING, f".{name}{TMP_SUFFIX}")
            self.root.fs.create_dir(self.root.path(LANDING), recursive=True)
            with self.root.fs.open_output_stream(path) as out:
                out.write(b"probe\n")
            self.root.fs.delete_file(path)
            return
        folder = self.root.local_path(LANDING)
        folder.mkdir(parents=True, exist_ok=True)
        os.unlink(self._write_local(folder, name, b"probe\n", rename=False))

    def _write_local(self, folder: Path, name: str, data: bytes, *,
                     rename: bool = True) -> Path:
        """Temp file, fsync, rename, fsync the folder; a failure leaves no file behind.

        A write refused (disk full, quota, I/O error) answers 503, the vendor
        retries: nothing of the refused attempt may stay, neither the temporary
        file nor a renamed one whose folder could not be synced.
        """
        tmp, target = folder / f".{name}{TMP_SUFFIX}", folder / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if not rename:
                return tmp
            os.rename(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if self.durable:
            try:
                fsync_dir(folder)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(target)
                raise
        return target

    def _ensure_dir(self, folder: Path) -> None:
        """Create once per process; new folders are fsync'd up to the data root."""
        key = str(folder)
        if key in self._dirs:
            return
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            if self.durable:
                base = Path(self.root.base)
                node = folder
                while node != base and base in node.parents:
                    fsync_dir(node.parent)
                    node = node.parent
        self._dirs.add(key)
