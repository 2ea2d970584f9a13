"""What operator fields hold once rendered, checked and converted in one place.

The DAGs render templates as text, never as native objects: Jinja's native mode
passes every rendered string through ``ast.literal_eval``, so a template id
``17966241338980000001`` became an int (and, past 64 bits, a float in XCom), a
column called ``1e5`` the float ``100000.0`` and a campaign ``None`` nothing at
all. Rendered as text, ids, contents, paths and column names arrive as the exact
string the user gave; the few typed fields (a flag, a count, a number of hours)
are converted here, explicitly, and a value that is neither fails the task with
a message naming the field (a retry would get the same value).
"""

from __future__ import annotations

import math
from typing import Any

from airflow.sdk.exceptions import AirflowFailException


def text(value: Any, field: str) -> str:
    """A text field as given: anything but a string means something upstream turned
    the user's text into another type, and converting it back could not undo that."""
    if not isinstance(value, str):
        raise AirflowFailException(
            f"{field} must be text, got {type(value).__name__} {value!r}: ids, contents, "
            "paths and column names are passed as strings")
    return value


def optional_text(value: Any, field: str) -> str | None:
    """A text field that may be left out: None or "" (what a null param renders to)."""
    if value is None or value == "":
        return None
    return text(value, field)


def flag(value: Any, field: str) -> bool:
    """A boolean, or the "True"/"False" a boolean param renders to."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise AirflowFailException(f"{field} must be true or false, got {value!r}")


def whole(value: Any, field: str) -> int:
    """A non-negative count, or its digits as rendered."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    raise AirflowFailException(f"{field} must be a whole number, got {value!r}")


def positive(value: Any, field: str) -> float:
    """A positive finite number, or its text as rendered (``72``, ``0.5``, ``1e-05``)."""
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or number <= 0:
        raise AirflowFailException(f"{field} must be a positive number, got {value!r}")
    return number


def json_value(value: Any, field: str) -> Any:
    """A structured field (a list of connection ids, an object of weights) rendered with
    ``| tojson``: parsed back exactly, so the ids inside stay the strings given. None,
    "" and "null" (a param left out) are None."""
    import json

    if value is None or (isinstance(value, str) and value.strip() in ("", "null", "None")):
        return None
    if not isinstance(value, str):
        return value  # given directly (a test, a DAG author), not rendered
    try:
        return json.loads(value)
    except ValueError:
        raise AirflowFailException(f"{field} must be JSON (rendered with | tojson), "
                                   f"got {value!r}") from None
