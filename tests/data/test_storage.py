"""The data root: what counts as data in a folder."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from sms_provider.data.storage import DataRoot


def test_a_file_still_being_written_is_not_listed_as_data(tmp_path: Path) -> None:
    root = DataRoot(str(tmp_path))
    written = root.write_table(pa.table({"a": ["1"]}), "reports", "part-1.parquet")
    folder = tmp_path / "reports"
    (folder / "_tmp-0123-part-2.parquet").write_bytes(b"PAR1 half written")
    (folder / ".part-3.parquet").write_bytes(b"hidden")
    assert [Path(p).name for p in root.parquet_files("reports")] == [Path(written).name]
