"""Where campaign data lives: a local folder or an object store, behind one interface.

Everything is Parquet written through a ``pyarrow`` filesystem, so the same
code writes to ``./data`` and to ``s3://…``. The Airflow layer hands in the
filesystem of an ``ObjectStoragePath`` (with its connection's credentials);
plain use and the tests pass a local path or ``file://`` URI.

Files are written to a temporary name and renamed, so a reader (or a rerun
after a crash) never sees half a file where the store allows renames.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import overload

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq


@overload
def epoch_ms(moment: datetime) -> int: ...


@overload
def epoch_ms(moment: None) -> None: ...


def epoch_ms(moment: datetime | None) -> int | None:
    """A moment as the datasets store it: milliseconds since the epoch (a naive time is UTC,
    as every time in the datasets is)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


class DataRoot:
    """A base location plus the filesystem to reach it."""

    def __init__(self, location: str | os.PathLike[str],
                 filesystem: pafs.FileSystem | None = None) -> None:
        location = os.fspath(location)
        if filesystem is None:
            if "://" in location:
                filesystem, location = pafs.FileSystem.from_uri(location)
            else:
                filesystem = pafs.LocalFileSystem()
                location = str(Path(location).resolve())
        self.fs = filesystem
        self.base = location.rstrip("/")

    def __repr__(self) -> str:
        return f"DataRoot({self.uri!r})"

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def uri(self) -> str:
        return self.base if self.is_local else f"{self.fs.type_name}://{self.base}"

    def path(self, *parts: str) -> str:
        return "/".join([self.base, *(p.strip("/") for p in parts if p)])

    def local_path(self, *parts: str) -> Path:
        if not self.is_local:
            raise ValueError(f"{self.uri} is not a local folder")
        return Path(self.path(*parts))

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def write_table(self, table: pa.Table, *parts: str) -> str:
        """Write one Parquet file, atomically where the filesystem can rename."""
        target = self.path(*parts)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        if not self.is_local:
            pq.write_table(table, target, filesystem=self.fs)
            return target
        # A leading "_" keeps dataset readers (which skip "_" and "." names) off it.
        folder, _, name = target.rpartition("/")
        tmp = f"{folder}/_tmp-{uuid.uuid4().hex}-{name}"
        pq.write_table(table, tmp, filesystem=self.fs)
        with open(tmp, "rb+") as handle:  # the rename below must not outrun the data
            os.fsync(handle.fileno())
        self.fs.move(tmp, target)
        return target

    def open_parquet(self, schema: pa.Schema, *parts: str,
                     dictionary: bool | list[str] = True) -> ParquetSink:
        """A Parquet file written a table at a time, renamed into place when closed (so a
        big output never has to be whole in memory, and a reader never sees half).
        ``dictionary``: the columns to dictionary-encode (all by default)."""
        return ParquetSink(self, schema, self.path(*parts), dictionary)

    def read_table(self, *parts: str) -> pa.Table:
        return pq.read_table(self.path(*parts), filesystem=self.fs)

    def read_dataset(self, *parts: str) -> pa.Table:
        """Every Parquet file below a folder as one table (empty folder: no table)."""
        return ds.dataset(self.path(*parts), filesystem=self.fs, format="parquet").to_table()

    def list_files(self, *parts: str) -> list[str]:
        selector = pafs.FileSelector(self.path(*parts), allow_not_found=True, recursive=True)
        return sorted(info.path for info in self.fs.get_file_info(selector)
                      if info.type == pafs.FileType.File)

    def parquet_files(self, *parts: str) -> list[str]:
        """The Parquet files below a folder, sorted (what else lies there is not data).

        Names starting with ``_`` or ``.`` are skipped, as Arrow's own listing does:
        :meth:`write_table` writes under ``_tmp-...`` first, so a file still being
        written is never read.
        """
        return [p for p in self.list_files(*parts) if p.endswith(".parquet")
                and not p.rsplit("/", 1)[-1].startswith(("_", "."))]

    def remove_dir(self, *parts: str) -> None:
        if self.exists(*parts):
            self.fs.delete_dir(self.path(*parts))

    def campaign(self, campaign_id: str, *parts: str) -> tuple[str, ...]:
        return ("campaigns", campaign_id, *parts)


class ParquetSink:
    """One Parquet file being written piece by piece (:meth:`DataRoot.open_parquet`).

    Locally it goes to a ``_tmp-`` name (which dataset readers skip) and is
    fsync'd and renamed on :meth:`close`, as :meth:`DataRoot.write_table` does; an
    object store has no rename, and its upload completes on close.
    """

    def __init__(self, root: DataRoot, schema: pa.Schema, target: str,
                 dictionary: bool | list[str] = True) -> None:
        self.root, self.target = root, target
        root.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        folder, _, name = target.rpartition("/")
        self.tmp = f"{folder}/_tmp-{uuid.uuid4().hex}-{name}" if root.is_local else target
        self.writer = pq.ParquetWriter(self.tmp, schema, filesystem=root.fs,
                                       use_dictionary=dictionary)

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)

    def abort(self) -> None:
        """Drop what was written (a run that failed halfway leaves no file behind)."""
        try:
            self.writer.close()
        finally:
            self.root.fs.delete_file(self.tmp)

    def close(self) -> str:
        self.writer.close()
        if self.tmp != self.target:
            with open(self.tmp, "rb+") as handle:  # the rename below must not outrun the data
                os.fsync(handle.fileno())
            self.root.fs.move(self.tmp, self.target)
        return self.target
