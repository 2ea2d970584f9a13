"""Input a person has to fix, told apart from failures a retry may cure.

The Airflow layer fails a task at once on :class:`BadInputError` (a retry
would read the same file and the same content and fail the same way) and lets
anything else (a full disk, a lost connection) take its retries. The data
plane raises these without knowing Airflow exists.
"""

from __future__ import annotations

import os


class BadInputError(ValueError):
    """The recipient file, the content or a setting is unusable as given."""


class RecipientFileError(BadInputError):
    """A recipient file cannot be used; the message says which file, where and why."""

    def __init__(self, path: str | os.PathLike[str], message: str, *,
                 line: int | None = None, column: str | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.column = column
        where = [self.path]
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}")
