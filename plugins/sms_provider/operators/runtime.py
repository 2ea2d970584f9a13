"""Where a running task finds the data root and its recipients file.

The environment is read by :mod:`sms_provider.data.locations`; what this adds is
Airflow's ``ObjectStoragePath`` for object-store URIs, so the URI's connection
supplies the credentials (``s3://aws_conn@bucket/sms``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.fs as pafs

from sms_provider.data.locations import data_location, is_object_store
from sms_provider.data.storage import DataRoot


def data_root() -> DataRoot:
    location = data_location()
    if is_object_store(location):
        from airflow.sdk import ObjectStoragePath

        path = ObjectStoragePath(location)
        return DataRoot(path.path, pafs.PyFileSystem(pafs.FSSpecHandler(path.fs)))
    return DataRoot(location.removeprefix("file://"))


@contextmanager
def local_recipients(location: str) -> Iterator[str]:
    """A local path for the recipients file; an object-store URI is copied to a temp file
    first (through ``ObjectStoragePath``, so the URI's connection supplies credentials)."""
    if not is_object_store(location):
        yield location
        return
    from airflow.sdk import ObjectStoragePath

    source = ObjectStoragePath(location)
    with tempfile.NamedTemporaryFile(suffix=Path(source.path).suffix) as copy:
        with source.open("rb") as handle:
            shutil.copyfileobj(handle, copy, length=1 << 20)
        copy.flush()
        yield copy.name
