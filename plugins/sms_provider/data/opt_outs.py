"""Opt-outs: which replies mean "stop messaging me", and the suppression list they join.

One home for the whole path, whichever way a reply arrives: a pulled reply
(``collect``) and a pushed one (the receiver) are both judged by
:func:`is_opt_out` when their inbound table is built (``reports``), and both
put their senders on the list through :func:`add_opt_outs`; *prepare* drops
every number :func:`load_suppressed` returns. Numbers on the list are E.164
digits without ``+``, as prepare compares them.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.numbers import check_numbers
from sms_provider.data.schemas import SUPPRESSION_SCHEMA
from sms_provider.data.storage import DataRoot, epoch_ms
from sms_provider.vendors.profiles import profile_of

log = logging.getLogger(__name__)

#: replies that mean "stop messaging me" (case and surrounding punctuation ignored)
DEFAULT_OPT_OUT_WORDS = ("TD", "T", "退订", "STOP", "UNSUBSCRIBE", "取消")
#: the dataset prepare reads
SUPPRESSION = "suppression"
_PUNCT = re.compile(r"^[\s\W_]+|[\s\W_]+$", re.UNICODE)
_REASON_MAX = 100


def is_opt_out(content: str, words: Iterable[str] = DEFAULT_OPT_OUT_WORDS) -> bool:
    """True when the reply is one of ``words`` alone (``"td"``, ``"退订！"``), not a
    sentence that merely contains one: "T" is a word, but "Thanks" is no opt-out."""
    text = _PUNCT.sub("", content or "").upper()
    return bool(text) and text in {w.strip().upper() for w in words}


def words_from_text(raw: str) -> tuple[str, ...]:
    """Opt-out words from comma-separated text (``SMS_OPT_OUT_WORDS``); the defaults
    when it names none."""
    words = tuple(w.strip() for w in raw.split(",") if w.strip())
    return words or DEFAULT_OPT_OUT_WORDS


def load_suppressed(root: DataRoot) -> pa.Array:
    """E.164 numbers that must not be messaged (opt-outs and the like)."""
    if not root.list_files(SUPPRESSION):
        return pa.array([], pa.string())
    table = root.read_dataset(SUPPRESSION)
    return pc.unique(pc.cast(table["e164"], pa.string()))


@dataclass
class OptOutsAdded:
    """What :func:`add_opt_outs` did: opt-out rows seen, numbers newly suppressed,
    rows left alone by reason, files written."""

    opt_outs: int = 0
    suppressed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def add_opt_outs(root: DataRoot, conn_id: str, inbound_table: pa.Table, *,
                 now: datetime | None = None) -> OptOutsAdded:
    """Put the senders of the opt-out rows of ``inbound_table`` on the suppression list.

    Numbers are normalised to E.164 digits as *prepare* writes them (a vendor
    whose reports carry country-code digits is read as such, by its profile).
    Numbers already listed are not added again; a sender that is no valid
    mobile number cannot be sent to anyway and is only counted.
    """
    result = OptOutsAdded()
    rows = inbound_table.filter(pc.fill_null(inbound_table["opt_out"], False))
    result.opt_outs = rows.num_rows
    if not rows.num_rows:
        return result
    e164 = _e164(rows["mobile"].to_pylist(), rows["vendor"].to_pylist())
    listed = set(load_suppressed(root).to_pylist())
    reasons: dict[str, str] = {}
    for number, content in zip(e164, rows["content"].to_pylist(), strict=True):
        if number is None:
            result.skip("opt_out_number_invalid")
        elif number in listed or number in reasons:
            result.skip("already_suppressed")
        else:
            reasons[number] = f"opt_out: {(content or '').strip()}"[:_REASON_MAX]
    if not reasons:
        return result
    now = datetime.now(UTC) if now is None else now
    added_at = epoch_ms(now if now.tzinfo else now.replace(tzinfo=UTC))
    table = pa.table({
        "e164": list(reasons), "reason": list(reasons.values()),
        "conn_id": [conn_id] * len(reasons), "added_at": [added_at] * len(reasons),
    }, schema=SUPPRESSION_SCHEMA)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"{_safe(f'opt_out-{conn_id}')}-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
    result.paths.append(root.write_table(table, SUPPRESSION, name))
    result.suppressed = table.num_rows
    log.info("suppression: %d numbers added from opt-out replies on %s", table.num_rows,
             conn_id)
    return result


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _e164(mobiles: Sequence[str | None], vendors: Sequence[str | None]) -> list[str | None]:
    """E.164 digits per sender, read the way each vendor writes numbers; None if invalid."""
    e164_digits = {v: bool(v) and profile_of(v).reports_e164_digits for v in set(vendors)}
    first = [f"+{m}" if e164_digits[v] and m and m.isdigit() else m
             for m, v in zip(mobiles, vendors, strict=True)]
    out: list[str | None] = check_numbers(pa.array(first, pa.string())).e164.to_pylist()
    retry = [i for i, v in enumerate(out) if v is None and first[i] != mobiles[i]]
    if retry:  # a mainland number written without its country code
        again = check_numbers(pa.array([mobiles[i] for i in retry], pa.string())).e164
        for i, value in zip(retry, again.to_pylist(), strict=True):
            out[i] = value
    return out
