"""A landed push: the record kept on disk, where its file lives, and its reading.

A vendor stops pushing a report once we answer 2xx, so the answer may only go
out once the request is on disk (:mod:`sms_provider.receiver.landing` writes it;
:mod:`sms_provider.receiver.compaction` turns it into Parquet). Layout under the
data root::

    landing/<conn_id>/reports/<utc-stamp>-<uuid>.json
    landing/<conn_id>/inbound/<utc-stamp>-<uuid>.json
    landing/<conn_id>/inbound/parts/<utc-stamp>-<uuid>.json   (parts of long replies)

A file holds what re-parsing needs and no credential: the vendor, the push
form, the raw body (base64), the query parameters without ``receiver``/``pswd``,
the ``appId``/``gzip`` headers and the time it arrived. :func:`parse_record`
reads it with the vendor parsers, the same call at the door and at compaction,
so what is acknowledged is exactly what compacts.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl

from sms_provider.errors import ProtocolError
from sms_provider.models import DeliveryReport, InboundMessage
from sms_provider.receiver.config import ReceiverConfig
from sms_provider.vendors import chuanglan, eims_answers, emay_ims

LANDING = "landing"
QUARANTINE = "quarantine"
REPORTS, INBOUND = "reports", "inbound"
PARTS = "parts"
SOURCE = "push"
FORMAT_VERSION = 1

#: the push forms, each with its own parser
EMAY_ENCRYPTED = "emay_encrypted"
EMAY_FORM = "emay_form"
EIMS_PUT = "eims_put"
CHUANGLAN_REPORT = "chuanglan_report"
CHUANGLAN_MO = "chuanglan_mo"
FORMS = {EMAY_ENCRYPTED: REPORTS, EMAY_FORM: REPORTS, EIMS_PUT: REPORTS,
         CHUANGLAN_REPORT: REPORTS, CHUANGLAN_MO: INBOUND}

#: a temporary file this old was never acknowledged: its writer died before the rename
STALE_TEMP_S = 3600.0
TMP_SUFFIX = ".tmp"
SUFFIX = ".json"


class LandingError(ValueError):
    """A landing file cannot be read back: not a landing record."""


# --- the record ----------------------------------------------------------------------
@dataclass(frozen=True)
class LandingRecord:
    """One accepted push, as it is kept until compaction."""

    conn_id: str
    vendor: str
    form: str                                   # one of FORMS
    received_at: datetime                       # UTC, when it reached us
    body: bytes = b""
    params: tuple[tuple[str, str], ...] = ()    # query parameters, credentials removed
    headers: Mapping[str, str] = field(default_factory=dict)  # appId, gzip, content-type

    @property
    def kind(self) -> str:
        return FORMS[self.form]

    def to_json(self) -> bytes:
        doc = {
            "version": FORMAT_VERSION, "conn_id": self.conn_id, "vendor": self.vendor,
            "form": self.form, "kind": self.kind,
            "received_at": self.received_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "body_b64": base64.b64encode(self.body).decode("ascii"),
            "params": [list(p) for p in self.params if p[0] not in chuanglan.PUSH_CREDENTIALS],
            "headers": dict(self.headers),
        }
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> LandingRecord:
        try:
            doc = json.loads(data.decode("utf-8"))
            form = doc["form"]
            if form not in FORMS:
                raise ValueError(form)
            return cls(
                conn_id=str(doc["conn_id"]), vendor=str(doc["vendor"]), form=form,
                received_at=datetime.fromisoformat(doc["received_at"]).astimezone(UTC),
                body=base64.b64decode(doc.get("body_b64") or "", validate=True),
                params=tuple((str(k), str(v)) for k, v in doc.get("params") or ()),
                headers={str(k): str(v) for k, v in (doc.get("headers") or {}).items()})
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError,
                binascii.Error) as exc:
            raise LandingError(f"not a landing record ({type(exc).__name__})") from None


def parse_record(record: LandingRecord, config: ReceiverConfig
                 ) -> list[DeliveryReport] | list[InboundMessage]:
    """The vendor parser's reading of a landed request; ProtocolError when malformed.

    The receiver calls this before landing and compaction after, so what is
    acknowledged is exactly what compacts.
    """
    items = _parse(record, config)
    check_ids(items, record.vendor, record.form)
    return items


def _parse(record: LandingRecord, config: ReceiverConfig
           ) -> list[DeliveryReport] | list[InboundMessage]:
    form = record.form
    if form == EMAY_ENCRYPTED:
        return emay_ims.parse_push_encrypted(record.body, record.headers.get("appId"),
                                             config.emay_secret_key)
    if form == EMAY_FORM:
        return emay_ims.parse_push_form(form_field(record.body, "reports"))
    if form == EIMS_PUT:
        return eims_answers.parse_push_reports(record.body)
    params = dict(record.params)  # a repeated parameter: the last one wins
    if form == CHUANGLAN_REPORT:
        return [chuanglan.parse_push_report(params)]
    return [chuanglan.parse_push_mo(params)]


#: what no vendor's id or number holds and a path-escape needs: separators, control
#: characters (NUL among them), percent-encodings
_UNSAFE_ID = re.compile(r"[/\\\x00-\x1f\x7f-\x9f]|%[0-9A-Fa-f]{2}|^\.\.?$")
_ID_FIELDS = ("message_id", "custom_id", "reference", "mobile", "destination")


def check_ids(items: Sequence[DeliveryReport | InboundMessage], vendor: str,
              form: str) -> None:
    """Refuse ids that look like paths: nothing downstream should have to be careful."""
    for index, item in enumerate(items):
        for name in _ID_FIELDS:
            value = getattr(item, name, None)
            if isinstance(value, str) and _UNSAFE_ID.search(value):
                raise ProtocolError(f"item {index}: field '{name}' holds a path separator, "
                                    "a control character or a percent-encoding",
                                    vendor=vendor, endpoint=form)


def form_field(body: bytes, name: str) -> str:
    """One field of a urlencoded body (the last, if repeated); '' when absent."""
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, encoding="utf-8",
                          errors="strict")
    except UnicodeDecodeError:
        raise ProtocolError("form body is not urlencoded UTF-8", vendor=emay_ims.VENDOR,
                            endpoint=emay_ims.PUSH) from None
    return dict(pairs).get(name, "")


def is_part(message: InboundMessage) -> bool:
    """A part of a long reply (Chuanglan ``isems=1``)."""
    return (message.raw.get("isems") or "0") == "1"


# --- files ---------------------------------------------------------------------------
def landing_name(received_at: datetime) -> str:
    """Names sort by arrival: compaction takes the oldest first."""
    stamp = received_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{stamp}-{uuid.uuid4().hex}{SUFFIX}"


def fsync_dir(folder: Path | str) -> None:
    """Make a folder's entries (a rename, a new file) durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
