"""Emay Flash Push (FMS, 闪推): template-based sends to mainland numbers.

Every FMS message is an instance of a template that the carriers approved
beforehand, so the flow is register -> wait for approval -> send with
variables. Two wire modes share one answer convention (the code travels in
the ``result`` response header and only ``SUCCESS`` carries a body, the data
JSON itself):

* ``normal`` (alias ``plain``): UTF-8 JSON body carrying ``appId``; no signature.
* ``secure``: the Emay envelope of :mod:`sms_provider.vendors.emay_common`.

Both carry ``requestTime`` (epoch ms) and ``requestValidPeriod`` (s); the
vendor refuses a request once ``requestTime + period*1000 < now``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import requests

from sms_provider.errors import AuthenticationError, LimitExceededError, ProtocolError
from sms_provider.models import (
    ApprovalState,
    Balance,
    DeliveryReport,
    Submission,
    Template,
)
from sms_provider.segments import charge_items
from sms_provider.vendors import emay_common, profiles
from sms_provider.vendors.base import (
    OutboundMessage,
    VendorClient,
    message_columns,
    message_variables,
)
from sms_provider.vendors.batch_text import digit_numbers, longest
from sms_provider.vendors.clock import epoch_ms, parse_china
from sms_provider.vendors.codec import aes_key_bytes
from sms_provider.vendors.codes import CodeTable, normalise_state, raise_for_code
from sms_provider.vendors.emay_accepted import fms_data_accepted
from sms_provider.vendors.limits import check_custom_id
from sms_provider.vendors.profile import VendorProfile
from sms_provider.vendors.transport import HttpSettings

PROFILE = profiles.EMAY_FMS
VENDOR = PROFILE.conn_type

#: One table for every code the FMS platform answers (shared with Emay IMS).
CODES: CodeTable = emay_common.CODES
SUCCESS = emay_common.SUCCESS

MOBILE_RE = re.compile(r"1[0-9]{10}")  # used with fullmatch: ASCII digits only
#: ``${name}``; the document's ``{name}`` is a typo per the platform's behaviour.
PLACEHOLDER_RE = re.compile(r"\$\{([^{}]+)\}")

BATCH_LIMIT = PROFILE.limits.batch
REPORT_PULL_LIMIT = PROFILE.limits.report_pull
CUSTOM_ID_MAX = PROFILE.limits.custom_id_chars
DEFAULT_PREFIXES = {"normal": "/fms/normal", "secure": "/fms/secure"}
_MODE_ALIASES = {"normal": "normal", "plain": "normal", "secure": "secure"}

#: The document's per-carrier approval values (-1..3).
APPROVAL_STATES: dict[int, ApprovalState] = {
    -1: ApprovalState.NOT_FOUND,
    0: ApprovalState.PENDING,
    1: ApprovalState.APPROVED,
    2: ApprovalState.REJECTED,
    3: ApprovalState.UNSUPPORTED,
}

#: Seconds to back off after ERROR_OVER_SPEED; the platform gives no hint of its own.
OVER_SPEED_RETRY_AFTER = 1.0


# --- pure answer parsing (also used on canned answers in tests) -------------------------

def raise_for_result(result: str | None, endpoint: str) -> None:
    """Turn the ``result`` header into the taxonomy; SUCCESS passes."""
    if result is None or not result.strip():
        raise ProtocolError("answer has no result header", vendor=VENDOR, endpoint=endpoint)
    if result.strip() == SUCCESS:
        return
    raise_for_code(VENDOR, CODES, result, endpoint, retry_after=OVER_SPEED_RETRY_AFTER)


def template_placeholders(text: str) -> tuple[str, ...]:
    """Placeholder names in order of first appearance, each once."""
    seen: dict[str, None] = {}
    for name in PLACEHOLDER_RE.findall(text):
        seen.setdefault(name.strip(), None)
    return tuple(seen)


def render_template(text: str, variables: Mapping[str, str] | None) -> str:
    """The text a handset will show, for the charge-item estimate."""
    values = variables or {}
    return PLACEHOLDER_RE.sub(lambda m: str(values.get(m.group(1).strip(), m.group(0))), text)


def _protocol(endpoint: str, what: str) -> ProtocolError:
    return ProtocolError(what, vendor=VENDOR, endpoint=endpoint)


def _text_field(item: Mapping[str, Any], key: str) -> str | None:
    """A string field that may arrive as a number; empty counts as absent."""
    value = item.get(key)
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip()
    return text or None


def parse_registered_template(data: Any, template_text: str, endpoint: str) -> Template:
    """templateReport answer ``{"templateId", "variable": "a,b"}`` -> Template.

    When the answer omits ``variable`` the names are read from the text we
    registered, so callers always learn what the template expects.
    """
    if not isinstance(data, dict):
        raise _protocol(endpoint, f"template answer is {type(data).__name__}, expected object")
    template_id = _text_field(data, "templateId")
    if template_id is None:
        raise _protocol(endpoint, "template answer has no templateId")
    raw = data.get("variable")
    if raw is None:
        variables = template_placeholders(template_text)
    elif isinstance(raw, str):
        variables = tuple(v.strip() for v in raw.split(",") if v.strip())
    elif isinstance(raw, list) and all(isinstance(v, str) for v in raw):
        variables = tuple(v.strip() for v in raw if v.strip())
    else:
        raise _protocol(endpoint, "template answer's variable is neither text nor a list")
    return Template(template_id=template_id, approvals={}, variables=variables)


def _approval(value: Any, carrier: str, endpoint: str) -> ApprovalState:
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        number = int(value)
    else:
        number = None
    if number not in APPROVAL_STATES:
        raise _protocol(endpoint, f"approval state of {carrier} is {value!r}, "
                                  f"expected one of {sorted(APPROVAL_STATES)}")
    return APPROVAL_STATES[number]


def parse_template_status(data: Any, template_id: str, endpoint: str) -> Template:
    """querytemplate answer ``{"templateId", "status": {cmcc, cucc, ctcc}}`` -> Template.

    Values may be numbers or strings (the document's table says String, its
    example shows numbers). A carrier the answer leaves out is left out.
    """
    if not isinstance(data, dict):
        raise _protocol(endpoint, f"template status is {type(data).__name__}, expected object")
    status = data.get("status")
    if not isinstance(status, dict):
        raise _protocol(endpoint, "template status answer has no status object")
    approvals = {str(carrier).strip(): _approval(value, str(carrier), endpoint)
                 for carrier, value in status.items()}
    if not approvals:
        raise _protocol(endpoint, "template status object is empty")
    return Template(template_id=_text_field(data, "templateId") or template_id,
                    approvals=approvals)


def parse_report(item: Any, endpoint: str) -> DeliveryReport:
    if not isinstance(item, dict):
        raise _protocol(endpoint, f"report entry is {type(item).__name__}, expected object")
    mobile, state = _text_field(item, "mobile"), _text_field(item, "state")
    if mobile is None or state is None:
        raise _protocol(endpoint, "report entry lacks mobile or state")
    return DeliveryReport(
        message_id=_text_field(item, "fmsId"),
        mobile=mobile,
        raw_state=state,
        status=normalise_state(emay_common.REPORT_STATES, state),
        custom_id=_text_field(item, "customFmsId"),
        description=_text_field(item, "desc") or emay_common.STATE_DESCRIPTIONS.get(state, ""),
        submit_time=parse_china(_text_field(item, "submitTime")),
        report_time=parse_china(_text_field(item, "receiveTime")),
        raw=dict(item),
    )


def parse_reports(data: Any, endpoint: str) -> list[DeliveryReport]:
    """getFMSReport answer (a list; empty or null when nothing is waiting)."""
    if data is None:
        return []
    data = emay_common.clean_keys(data)
    if not isinstance(data, list):
        raise _protocol(endpoint, f"report answer is {type(data).__name__}, expected a list")
    return [parse_report(item, endpoint) for item in data]


def parse_balance(data: Any, endpoint: str) -> list[Balance]:
    """getBalance answer: ``{"balance": "10000"}`` or, on some deployments, a bare value."""
    raw = data.get("balance") if isinstance(data, dict) else data
    if raw is None or isinstance(raw, bool | dict | list):
        raise _protocol(endpoint, "balance answer holds no balance value")
    try:
        amount = Decimal(str(raw).strip())
    except InvalidOperation:
        raise _protocol(endpoint, "balance is not a number") from None
    if not amount.is_finite():
        raise _protocol(endpoint, "balance is not a finite number")
    return [Balance(amount=amount, unit="items")]


def _answer_entry(item: Any, endpoint: str) -> tuple[str, str | None, str]:
    if not isinstance(item, dict):
        raise _protocol(endpoint, f"send answer entry is {type(item).__name__}, expected object")
    mobile, fms_id = _text_field(item, "mobile"), _text_field(item, "fmsId")
    if mobile is None or fms_id is None:
        raise _protocol(endpoint, "send answer entry lacks mobile or fmsId")
    return mobile, _text_field(item, "customFmsId"), fms_id


def parse_submissions(data: Any, sent: Sequence[tuple[str, str | None, int]], endpoint: str
                      ) -> list[Submission]:
    """Pair the send answer with what we sent, by mobile and custom id.

    ``sent`` holds (mobile, custom id, charge items) in request order. The
    answer is one object for sendSingleFMS and a list for sendBatchFMS; it
    must account for every recipient, else the outcome is unclear.
    """
    data = emay_common.clean_keys(data)
    entries = data if isinstance(data, list) else [data]
    ids: dict[tuple[str, str | None], deque[str]] = defaultdict(deque)
    for item in entries:
        mobile, custom_id, fms_id = _answer_entry(item, endpoint)
        ids[(mobile, custom_id)].append(fms_id)
    out = []
    for index, (mobile, custom_id, items) in enumerate(sent):
        queue = ids.get((mobile, custom_id)) or ids.get((mobile, None))
        if not queue:
            raise _protocol(endpoint, f"send answer has no fmsId for message {index} "
                                      f"({len(entries)} entries for {len(sent)} recipients)")
        out.append(Submission(mobile=mobile, message_id=queue.popleft(), custom_id=custom_id,
                              charge_items=items, vendor_code=SUCCESS))
    return out


def _variables_text(variables: Mapping[str, Any] | None) -> str:
    """A recipient's variables as the entry's ``content``: compact JSON of text values,
    empty when there are none."""
    if not variables:
        return ""
    return json.dumps({str(k): str(v) for k, v in variables.items()}, ensure_ascii=False,
                      separators=(",", ":"))


# --- the client -------------------------------------------------------------------------

class EmayFmsClient(VendorClient):
    """Emay FMS over ``normal`` (JSON, appId in the body) or ``secure`` (AES envelope).

    Settings the document leaves open:

    * ``path_prefix`` -- ``/fms/normal`` or ``/fms/secure`` by default; some
      deployments serve the normal interface under ``/inter``.
    * ``request_valid_period`` -- seconds the vendor may accept a request after
      ``requestTime``; 60 by default, short enough to stop stale replays.
    * ``gzip`` -- compress secure bodies (the document recommends it).
    * ``template_text`` -- the text of the template usually sent, with
      ``${name}`` placeholders. The vendor bills the rendered text, which only
      the template knows, so without it every message is estimated at one
      charge item. ``send(template_text=...)`` overrides it per call. When known,
      each message's variables are also checked against the placeholders.
    * ``clock`` -- epoch-milliseconds source for ``requestTime``, for hosts
      whose clock is known to be off.
    """

    profile: ClassVar[VendorProfile] = PROFILE

    def __init__(self, settings: HttpSettings, *, app_id: str, secret_key: str,
                 mode: str = "normal", gzip: bool = True, path_prefix: str | None = None,
                 request_valid_period: int = emay_common.REQUEST_VALID_PERIOD_S,
                 max_batch: int | None = None, template_text: str | None = None,
                 clock: Callable[[], int] = epoch_ms) -> None:
        wire_mode = _MODE_ALIASES.get(str(mode).strip().lower())
        if wire_mode is None:
            raise ValueError(f"mode must be one of {sorted(_MODE_ALIASES)}, got {mode!r}")
        if not app_id:
            raise ValueError("app_id is empty")
        if isinstance(request_valid_period, bool) or not isinstance(request_valid_period, int) \
                or request_valid_period < 1:
            raise ValueError("request_valid_period must be a positive number of seconds")
        if wire_mode == "secure":
            if not secret_key:
                raise ValueError("secret_key is empty; the secure mode encrypts with it")
            try:  # refuse a malformed key now, not on the first send
                aes_key_bytes(secret_key)
            except AuthenticationError as exc:
                raise AuthenticationError(str(exc), vendor=VENDOR) from None
        super().__init__(settings, max_batch=max_batch)
        self.mode = wire_mode
        self.gzip = bool(gzip)
        self.app_id = app_id
        self._secret_key = secret_key
        self.request_valid_period = request_valid_period
        self.template_text = template_text
        self._clock = clock
        prefix = DEFAULT_PREFIXES[wire_mode] if path_prefix is None else path_prefix.strip()
        self.path_prefix = ("/" + prefix.strip("/")) if prefix.strip("/") else ""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(base_url={self.http.base_url!r}, mode={self.mode!r}, "
                f"app_id={self.app_id!r}, path_prefix={self.path_prefix!r})")

    # --- wire -----------------------------------------------------------------------------
    def _call(self, endpoint: str, fields: dict[str, Any], *, idempotent: bool) -> Any:
        """POST one request; the decoded data JSON on SUCCESS (None for an empty body)."""
        return self._decode(self._exchange(endpoint, fields, idempotent=idempotent),
                            self._path(endpoint))

    def _exchange(self, endpoint: str, fields: dict[str, Any], *, idempotent: bool
                  ) -> requests.Response:
        """POST one request; the answer as it came once its result header says SUCCESS."""
        path = self._path(endpoint)
        payload = {"requestTime": int(self._clock()),
                   "requestValidPeriod": self.request_valid_period, **fields}
        if self.mode == "secure":
            body = emay_common.encode_secure(payload, self._secret_key, gzip_on=self.gzip)
            headers = emay_common.secure_headers(self.app_id, gzip_on=self.gzip)
        else:
            payload = {"appId": self.app_id, **payload}
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json;charset=utf-8"}
        resp = self.http.request("POST", path, idempotent=idempotent, data=body, headers=headers)
        raise_for_result(resp.headers.get("result"), path)
        return resp

    def _decode(self, resp: requests.Response, path: str) -> Any:
        raw = resp.content
        if not raw:
            return None
        try:
            if self.mode == "secure":
                return emay_common.clean_keys(emay_common.decode_secure(
                    raw, self._secret_key, gzip_on=self.gzip))
            return emay_common.clean_keys(json.loads(raw.decode("utf-8")))
        except ProtocolError as exc:
            raise _protocol(path, f"answer body cannot be decoded: {exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _protocol(path, f"answer body is not JSON: {type(exc).__name__}") from None

    def _require(self, data: Any, path: str) -> Any:
        if data is None:
            raise _protocol(path, "SUCCESS answer has no body")
        return data

    def _path(self, endpoint: str) -> str:
        return f"{self.path_prefix}/{endpoint}"

    # --- templates ------------------------------------------------------------------------
    def register_template(self, text: str) -> Template:
        """Submit a template for carrier approval; poll :meth:`query_template` after."""
        if not text or not text.strip():
            raise LimitExceededError("template text is empty", vendor=self.vendor)
        data = self._call("templateReport", {"templateInfo": text}, idempotent=False)
        path = self._path("templateReport")
        return parse_registered_template(self._require(data, path), text, path)

    def query_template(self, template_id: str) -> Template:
        """Per-carrier approval; unknown ids come back NOT_FOUND for every carrier."""
        if not template_id or not str(template_id).strip():
            raise LimitExceededError("template id is empty", vendor=self.vendor)
        data = self._call("querytemplate", {"templateId": str(template_id).strip()},
                          idempotent=True)
        path = self._path("querytemplate")
        return parse_template_status(self._require(data, path), str(template_id), path)

    # --- sending --------------------------------------------------------------------------
    def send(self, messages: Sequence[OutboundMessage], *, template_id: str | None = None,
             template_text: str | None = None) -> Sequence[Submission]:
        """Send one template to each recipient with its own variables.

        ``OutboundMessage.content`` is ignored: the template is the content.
        """
        self.check_batch(messages)
        if not template_id or not str(template_id).strip():
            raise LimitExceededError("an FMS send needs a template_id", vendor=self.vendor)
        text = template_text if template_text is not None else self.template_text
        template_id = str(template_id).strip()
        mobiles, _, custom_ids = message_columns(messages)
        if text is None and len(messages) > 1 and self._usual_chunk(mobiles, custom_ids):
            return self._send_usual(messages, template_id, mobiles, custom_ids)
        entries, sent = [], []
        for index, message in enumerate(messages):
            entry, items = self._entry(index, message, text)
            entries.append(entry)
            sent.append((entry["mobile"], message.custom_id, items))
        if len(entries) == 1:
            endpoint, fields = "sendSingleFMS", {"templateId": template_id, **entries[0]}
        else:
            endpoint, fields = "sendBatchFMS", {"templateId": template_id, "fmses": entries}
        data = self._call(endpoint, fields, idempotent=False)
        path = self._path(endpoint)
        return parse_submissions(self._require(data, path), sent, path)

    @staticmethod
    def _usual_chunk(mobiles: list[str], custom_ids: list[str | None]) -> bool:
        """Whether every message passes :meth:`_entry`'s checks, told without a Python
        step per message for the usual chunk (False: check them one by one)."""
        return (digit_numbers(mobiles, prefix="1", min_len=11, max_len=11)
                and longest(custom_ids) <= CUSTOM_ID_MAX)

    def _send_usual(self, messages: Sequence[OutboundMessage], template_id: str,
                    mobiles: list[str], custom_ids: list[str | None]) -> Sequence[Submission]:
        """A checked batch without a template text (one charge item each): the entries
        made from the columns, each distinct variables object encoded once, and the
        usual answer read by typed decoding."""
        texts: dict[int, str] = {}
        contents = [texts[id(v)] if id(v) in texts else texts.setdefault(id(v), _variables_text(v))
                    for v in message_variables(messages)]
        rows = zip(mobiles, contents, custom_ids, strict=True)
        entries = [{"mobile": m, "content": c} if i is None
                   else {"mobile": m, "content": c, "customFmsId": i} for m, c, i in rows]
        endpoint = "sendBatchFMS"
        path = self._path(endpoint)
        resp = self._exchange(endpoint, {"templateId": template_id, "fmses": entries},
                              idempotent=False)
        if resp.content:
            try:
                raw = (emay_common.open_secure(resp.content, self._secret_key,
                                               gzip_on=self.gzip)
                       if self.mode == "secure" else resp.content)
            except ProtocolError:
                raw = b""
            accepted = fms_data_accepted(raw, mobiles, custom_ids, [1] * len(mobiles))
            if accepted is not None:
                return accepted
        sent = list(zip(mobiles, custom_ids, [1] * len(mobiles), strict=True))
        return parse_submissions(self._require(self._decode(resp, path), path), sent, path)

    def _entry(self, index: int, message: OutboundMessage, template_text: str | None
               ) -> tuple[dict[str, str], int]:
        """Check one recipient against the limits; its wire entry and charge estimate."""
        where = f" of message {index}"
        mobile = message.mobile or ""
        if not MOBILE_RE.fullmatch(mobile):
            raise LimitExceededError(
                f"mobile{where} ({len(mobile)} characters) is not a mainland number "
                "(1 followed by 10 digits)", vendor=self.vendor)
        check_custom_id(self.vendor, message.custom_id, max_len=CUSTOM_ID_MAX, where=where)
        variables = {str(k): str(v) for k, v in (message.variables or {}).items()}
        items = 1
        if template_text is not None:
            expected = set(template_placeholders(template_text))
            if set(variables) != expected:
                raise LimitExceededError(
                    f"variables{where} {sorted(variables)} do not match the template's "
                    f"placeholders {sorted(expected)}", vendor=self.vendor)
            items = charge_items(render_template(template_text, variables))
        entry = {"mobile": mobile, "content": _variables_text(variables)}
        if message.custom_id is not None:
            entry["customFmsId"] = message.custom_id
        return entry, items

    # --- reports and balance --------------------------------------------------------------
    def pull_reports(self, limit: int | None = REPORT_PULL_LIMIT) -> list[DeliveryReport]:
        """Consume-once: a lost answer loses reports, hence never retried blindly."""
        number = REPORT_PULL_LIMIT if limit is None else limit
        if not 1 <= number <= REPORT_PULL_LIMIT:
            raise LimitExceededError(
                f"report pull size {number} is outside 1..{REPORT_PULL_LIMIT}",
                vendor=self.vendor)
        data = self._call("getFMSReport", {"number": number}, idempotent=False)
        return parse_reports(data, self._path("getFMSReport"))

    def balance(self) -> list[Balance]:
        data = self._call("getBalance", {}, idempotent=True)
        path = self._path("getBalance")
        return parse_balance(self._require(data, path), path)
