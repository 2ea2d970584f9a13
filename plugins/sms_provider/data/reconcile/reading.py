"""Reading the datasets reconciliation needs: only the columns wanted, never more.

Low-cardinality text columns are read as Parquet dictionaries, so ten million
``status`` values are ten million small integers and a handful of strings.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from sms_provider.data.reconcile.columns import as_text, canonical_ints, narrow_array
from sms_provider.data.storage import DataRoot

#: low-cardinality text columns, read as Parquet dictionaries: no strings are materialised
DICTIONARY_COLUMNS = frozenset({"conn_id", "vendor", "vendor_code", "status", "description",
                                "raw_state"})


def read(root: DataRoot, parts: tuple[str, ...], schema: pa.Schema, columns: list[str],
         filter: pc.Expression | None = None, numbers: Iterable[str] = ()) -> pa.Table:
    """The columns wanted of a dataset (missing files or columns: empty or null).

    Read that way, the dictionary columns also take the smallest indices that fit a batch
    at a time (``columns.narrow``), not the reader's int32 for ten million rows.

    ``numbers``: text id columns turned into int64 a batch at a time where every id is
    a plain number that casting back gives unchanged (``columns.canonical_ints``), so
    ten million ids are never all held as text; if any batch is not, the column stays
    text throughout (the batches already converted are written back exactly).
    """
    wanted = [c for c in columns if c in DICTIONARY_COLUMNS]
    schema = dictionary_schema(schema, wanted)
    files = root.parquet_files(*parts)
    if not files:
        return schema.empty_table().select(columns)
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=wanted))
    data = ds.dataset(files, filesystem=root.fs, format=fmt, schema=schema)
    numbers = [c for c in numbers if c in columns]
    if not numbers:
        return data.to_table(columns=columns, filter=filter)
    pieces: dict[str, list[pa.Array]] = {c: [] for c in columns}
    for batch in data.to_batches(columns=columns, filter=filter):
        for name in columns:
            column = batch.column(name)
            if name in numbers:
                values = canonical_ints(column)
                if values is not None:
                    column = pa.array(values, pa.int64(), mask=values < 0)
            elif pa.types.is_dictionary(column.type):
                column = narrow_array(column)
            pieces[name].append(column)
    out = {}
    for name in columns:
        kinds = {p.type for p in pieces[name]}
        if name in numbers and len(kinds) > 1:  # some batch not all numbers: all text
            pieces[name] = [as_text(p) for p in pieces[name]]
        elif len(kinds) > 1:  # dictionaries of different index widths: the widest
            widest = max(kinds, key=lambda t: t.index_type.bit_width)
            pieces[name] = [p.cast(widest) for p in pieces[name]]
        out[name] = pa.chunked_array(pieces[name], pieces[name][0].type if pieces[name]
                                     else schema.field(name).type)
        pieces[name] = []
    return pa.table(out)


def take(root: DataRoot, parts: tuple[str, ...], schema: pa.Schema, columns: list[str],
         positions: np.ndarray) -> pa.Table:
    """The columns wanted of the rows at ``positions`` (sorted, as :func:`read` numbers the
    rows), read a batch at a time: a wide text column is only ever needed for a few rows
    (copies of a report, reports matching nothing), and a whole one is hundreds of MiB."""
    files = root.parquet_files(*parts)
    if not files or not len(positions):
        return empty(schema, columns)
    wanted = [c for c in columns if c in DICTIONARY_COLUMNS]
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=wanted))
    data = ds.dataset(files, filesystem=root.fs, format=fmt,
                      schema=dictionary_schema(schema, wanted))
    return data.take(pa.array(positions, pa.int64()), columns=columns)


def dictionary_schema(schema: pa.Schema, names: Iterable[str]) -> pa.Schema:
    """``schema`` with the named text columns as dictionaries (as ``read`` returns them)."""
    names = set(names)
    return pa.schema([f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in names
                      else f for f in schema])


def empty(schema: pa.Schema, columns: list[str]) -> pa.Table:
    """No rows, typed as ``read`` would have returned them."""
    return dictionary_schema(schema, DICTIONARY_COLUMNS).empty_table().select(columns)


def list_campaigns(root: DataRoot) -> list[str]:
    """Every campaign folder under ``campaigns/``."""
    selector = pafs.FileSelector(root.path("campaigns"), allow_not_found=True)
    return sorted(info.base_name for info in root.fs.get_file_info(selector)
                  if info.type == pafs.FileType.Directory)


def account_campaigns(root: DataRoot) -> list[str]:
    """Every campaign and every resend attempt of one (``<id>/attempt-<n>``): whose
    submissions an account holds, so a report for a resent message is not a stray."""
    from sms_provider.data.resend.attempts import ATTEMPT_FOLDER

    out = []
    for campaign_id in list_campaigns(root):
        out.append(campaign_id)
        selector = pafs.FileSelector(root.path("campaigns", campaign_id), allow_not_found=True)
        out.extend(f"{campaign_id}/{info.base_name}" for info in sorted(
            root.fs.get_file_info(selector), key=lambda i: i.base_name)
            if info.type == pafs.FileType.Directory and ATTEMPT_FOLDER.match(info.base_name))
    return out
