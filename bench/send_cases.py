"""The vendor/mode cases ``bench/send.py`` measures: account, connection extras, shard shape.

One case is one way a campaign reaches a vendor: the simulator account it
sends to, the connection extras that pick the wire mode, how the prepared
shard looks (the vendor's number format; one content for all, or one per
recipient) and how many recipients a pass sends by default (enough for a
few seconds of sending; fewer where each request carries one recipient).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from sms_provider.data.schemas import PREPARED_SCHEMA
from tests.simulator_harness import DEFAULT_CONFIG, credentials

#: one charge item (≤ 70 characters), with the 【signature】 the gateways want
CONTENT = "【Bench】您的验证码是 482913, 10 分钟内有效, 请勿告诉他人。"
#: the FMS template the simulated account has approved, and its variables
FMS_TEMPLATE_ID = "10000000000000000001"
FMS_TEMPLATE = "【Bench】您的验证码是 ${code}, 10 分钟内有效, 请勿告诉他人。"
FMS_VARIABLES = json.dumps({"code": "482913"}, ensure_ascii=False)


def mainland(i: int) -> str:
    return f"138{i:08d}"


def idd(i: int) -> str:
    return f"0086138{i:08d}"


def e164_digits(i: int) -> str:
    return f"86138{i:08d}"


@dataclasses.dataclass(frozen=True)
class SendCase:
    """What the bench needs to send one vendor/mode: account, extras, shard shape."""

    vendor: str                      # connection type
    mode: str                        # the name --mode takes
    extras: dict[str, str]           # connection extras (as text, as a URI gives them)
    mobile: Callable[[int], str]     # the i-th recipient in the vendor's number format
    recipients: int                  # default recipients of one pass
    personalised: bool = False       # one content per recipient
    template_id: str | None = None
    variables: str | None = None     # every row's template variables (JSON)
    account: dict[str, Any] = dataclasses.field(default_factory=dict)  # simulator extras
    #: why the bare loop sends one request at a time (None: as many as the send path)
    serial: str | None = None
    #: what the vendor's protocol forces on this case, said beside its figure
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.vendor}/{self.mode}"

    def login(self) -> tuple[str, str]:
        return credentials(self.vendor)

    def simulator_config(self) -> dict[str, Any]:
        """The simulator's account for this case: the default one plus the case's extras."""
        return {**DEFAULT_CONFIG[self.vendor], **self.account}

    def table(self, n: int) -> pa.Table:
        """A prepared shard of ``n`` unique recipients.

        Built directly with pyarrow: the bench is about sending, not preparing.
        A personalised shard gives each recipient its own text (its row in it).
        """
        mobile = self.mobile
        contents = ([f"{CONTENT} #{i}" for i in range(n)] if self.personalised
                    else [CONTENT] * n)
        variables = (pa.array([self.variables] * n, pa.string()) if self.variables
                     else pa.nulls(n, pa.string()))
        return pa.table({
            "row_number": pa.array(range(1, n + 1), pa.int64()),
            "mobile": pa.array([mobile(i) for i in range(n)], pa.string()),
            "e164": pa.array([f"86138{i:08d}" for i in range(n)], pa.string()),
            "content": pa.array(contents, pa.string()),
            "variables": variables,
            "charge_items": pa.array([1] * n, pa.int32()),
            "custom_id": pa.array([f"r{i}" for i in range(1, n + 1)], pa.string()),
            "shard": pa.array([0] * n, pa.int32()),
            "carrier": pa.array(["China Mobile"] * n, pa.string()),
        }, schema=PREPARED_SCHEMA)


_MD5 = {"md5_key": "bench-md5-key"}
_MD5_SERIAL = "md5 mode: the platform takes one request at a time, in seq order"
_PER_RECIPIENT = "one request per recipient: EIMS has no personalised batch"

CASES: tuple[SendCase, ...] = (
    SendCase("emay_ims", "plain", {"mode": "plain"}, idd, 300_000),
    SendCase("emay_ims", "secure", {"mode": "secure", "gzip": "true"}, idd, 300_000),
    SendCase("emay_fms", "normal", {"mode": "normal"}, mainland, 300_000,
             template_id=FMS_TEMPLATE_ID, variables=FMS_VARIABLES,
             account={"templates": [{"id": FMS_TEMPLATE_ID, "text": FMS_TEMPLATE}]}),
    SendCase("emay_fms", "secure", {"mode": "secure", "gzip": "true"}, mainland, 300_000,
             template_id=FMS_TEMPLATE_ID, variables=FMS_VARIABLES,
             account={"templates": [{"id": FMS_TEMPLATE_ID, "text": FMS_TEMPLATE}]}),
    SendCase("eims", "plain", {}, e164_digits, 500_000),
    SendCase("eims", "md5", dict(_MD5), e164_digits, 500_000, account=dict(_MD5),
             serial=_MD5_SERIAL),
    SendCase("eims", "plain-personalised", {}, e164_digits, 5_000, personalised=True,
             note=_PER_RECIPIENT),
    SendCase("eims", "md5-personalised", dict(_MD5), e164_digits, 4_000, personalised=True,
             account=dict(_MD5), serial=_MD5_SERIAL, note=f"{_PER_RECIPIENT}; {_MD5_SERIAL}"),
    SendCase("eums", "ver1", {"ver": "1"}, mainland, 500_000),
    SendCase("eums", "ver17", {"ver": "17", "aes_key": DEFAULT_CONFIG["eums"]["aes_key"]},
             mainland, 500_000),
    SendCase("chuanglan", "plain", {}, mainland, 500_000),
)

VENDORS = tuple(dict.fromkeys(case.vendor for case in CASES))


def cases_for(vendor: str, mode: str | None) -> list[SendCase]:
    """The cases ``--vendor`` / ``--mode`` select (``all`` for every vendor; no mode: every
    mode of the vendor)."""
    chosen = [case for case in CASES if vendor in ("all", case.vendor)
              and (mode is None or case.mode == mode)]
    if not chosen:
        modes = ", ".join(case.name for case in CASES)
        raise SystemExit(f"no case {vendor}/{mode}; the cases are: {modes}")
    return chosen
