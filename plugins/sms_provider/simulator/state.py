"""What the simulated vendors remember: accepted messages, balances, reports, MO, templates.

Outcomes are a pure function of (seed, vendor, message id), so a run is
deterministic however the server's threads interleave. Reports fall due
``delay_s`` (plus a seeded jitter) after acceptance; pull queues hand each
report out once, as the real platforms do.
"""

from __future__ import annotations

import hashlib
import heapq
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sms_provider.segments import charge_items
from sms_provider.vendors.clock import CHINA_TZ

DELIVERED, FAILED, SILENT = "delivered", "failed", "silent"

DEFAULT_SIMULATION: dict[str, Any] = {
    "seed": 42,
    "report_delay_s": 0.0,      # seconds from acceptance to the report
    "report_jitter_s": 0.0,     # extra seeded delay, 0..jitter
    "outcomes": {DELIVERED: 0.9, FAILED: 0.08, SILENT: 0.02},
    "balance": 1_000_000,       # charge items per vendor account
    "mo_reply_rate": 0.0,       # share of delivered messages that get a reply
    "mo_texts": ["TD", "好的", "收到"],
    "duplicate_report_rate": 0.0,  # pushes: share of reports sent twice
    "push_interval_s": 0.2,
    "push_batch": 50,
    "push_attempts": 5,
    "template_decision_s": 0.0,  # FMS: pending time before carriers decide
    "template_rejection_rate": 0.0,
    # seeded discrepancies for reconciliation to find (all off by default)
    "stray_report_rate": 0.0,       # share of accepted messages that also get a report
                                    # for a message id the vendor never issued
    "statistics_extra_submitted": 0,  # added to every day's submitted statistic
    "overcharge_items": 0,          # items taken per accepted request beyond its charge
}

#: Appended to a real message id (and batch id) to make the id of a stray report:
#: digits like the vendors' own ids, one longer than the id it copies.
STRAY_SUFFIX = "9"


def unit_hash(*parts: object) -> float:
    """A stable number in [0, 1) from the parts; the simulator's only randomness."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(slots=True)
class Message:
    """One accepted message as the vendor recorded it."""

    seq: int
    vendor: str
    mobile: str
    content: str
    message_id: str
    custom_id: str | None
    charge_items: int
    submitted_at: float
    batch_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    due_at: float = 0.0
    reported: bool = False  # handed out by pull or push (consume-once)
    settings: dict[str, Any] = field(default_factory=dict, repr=False)
    _outcome: str | None = field(default=None, repr=False)

    @property
    def outcome(self) -> str:
        """delivered / failed / silent, drawn from the seed when first needed.

        Lazy because most accepted messages in a load test are never asked
        about, and hashing each one at acceptance halved the throughput.
        """
        if self._outcome is None:
            mix = self.settings.get("outcomes", DEFAULT_SIMULATION["outcomes"])
            delivered, failed = float(mix.get(DELIVERED, 0)), float(mix.get(FAILED, 0))
            draw = unit_hash(self.settings.get("seed", 0), self.vendor, self.message_id)
            self._outcome = (DELIVERED if draw < delivered else
                             FAILED if draw < delivered + failed else SILENT)
        return self._outcome

    def as_json(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor, "mobile": self.mobile, "content": self.content,
            "message_id": self.message_id, "custom_id": self.custom_id,
            "charge_items": self.charge_items, "batch_id": self.batch_id,
            "submitted_at": self.submitted_at, "outcome": self.outcome,
            "reported": self.reported, **self.extra,
        }

    @property
    def submit_time(self) -> datetime:
        return datetime.fromtimestamp(self.submitted_at, CHINA_TZ)

    @property
    def report_time(self) -> datetime:
        return datetime.fromtimestamp(self.due_at, CHINA_TZ)


@dataclass(slots=True)
class Inbound:
    """A reply from a handset, waiting to be pulled or pushed."""

    seq: int
    vendor: str
    mobile: str
    content: str
    destination: str
    received_at: float
    reference: str = ""
    pulled: bool = False


@dataclass(slots=True)
class SimTemplate:
    template_id: str
    text: str
    variables: tuple[str, ...]
    created_at: float
    decisions: dict[str, int]  # carrier -> final state (1 approved, 2 rejected)


class InsufficientBalance(Exception):
    """The account cannot pay for the request; the vendor answers its own code."""


class VendorState:
    """One vendor account: its messages, balance and queues. Thread-safe."""

    def __init__(self, vendor: str, settings: dict[str, Any]) -> None:
        self.vendor = vendor
        self.settings = settings
        self.lock = threading.RLock()
        self.messages: list[Message] = []
        self.by_id: dict[str, list[Message]] = {}
        self.balance = int(settings["balance"])
        self._report_heap: list[tuple[float, int, Message]] = []
        self.strays: list[Message] = []  # reports for ids never issued, never charged
        self._mo: list[Inbound] = []
        self._mo_heap: list[tuple[float, int, Inbound]] = []
        self.templates: dict[str, SimTemplate] = {}
        self.push_backlog: list[Message] = []
        self.mo_push_backlog: list[Inbound] = []

    # --- sending -------------------------------------------------------
    def accept(self, mobiles: Sequence[str], contents: Sequence[str],
               custom_ids: Sequence[str | None], id_for: Callable[[int], str],
               *, batch_id: str | None = None, extras: Sequence[dict] | None = None,
               items_for: Callable[[str], int] = charge_items) -> list[Message]:
        """Charge and record a request atomically; all or nothing, like the vendors."""
        items = [items_for(c) for c in contents]
        cost = sum(items)
        now = time.time()
        s = self.settings
        delay, jitter = float(s["report_delay_s"]), float(s["report_jitter_s"])
        seed = s["seed"]
        replies = float(s["mo_reply_rate"]) > 0
        stray_rate = float(s.get("stray_report_rate", 0))
        taken = cost + int(s.get("overcharge_items", 0))
        with self.lock:
            if taken > self.balance:
                raise InsufficientBalance(f"need {taken} items, have {self.balance}")
            self.balance -= taken
            start = len(self.messages)
            out = []
            heap, by_id = self._report_heap, self.by_id
            for i, (mobile, content, cid, n) in enumerate(
                    zip(mobiles, contents, custom_ids, items, strict=True)):
                seq = start + i
                msg_id = id_for(seq)
                due = now + delay + (unit_hash(seed, "jitter", msg_id) * jitter if jitter else 0)
                m = Message(seq, self.vendor, mobile, content, msg_id, cid, n, now,
                            batch_id, extras[i] if extras else {}, due, settings=s)
                out.append(m)
                by_id.setdefault(msg_id, []).append(m)
                heapq.heappush(heap, (due, seq, m))  # silent ones are skipped when taken
                if replies:
                    self._maybe_reply(m)
                if stray_rate and unit_hash(seed, "stray", msg_id) < stray_rate:
                    self._add_stray(m)
            self.messages.extend(out)
        return out

    def _add_stray(self, m: Message) -> None:
        """A delivered report, due just after ``m``'s, for an id the vendor never issued.

        Not a message of the account: not listed, not charged, not counted in the
        statistics and not found by id; only the report queues hand it out.
        """
        stray = Message(-1 - len(self.strays), self.vendor, m.mobile, m.content,
                        m.message_id + STRAY_SUFFIX, None, 0, m.submitted_at,
                        m.batch_id + STRAY_SUFFIX if m.batch_id else None, dict(m.extra),
                        m.due_at + 0.001, settings=m.settings, _outcome=DELIVERED)
        self.strays.append(stray)
        heapq.heappush(self._report_heap, (stray.due_at, stray.seq, stray))

    def _maybe_reply(self, m: Message) -> None:
        rate = float(self.settings["mo_reply_rate"])
        if rate and m.outcome == DELIVERED and unit_hash(self.settings["seed"], "mo",
                                                        m.message_id) < rate:
            texts = self.settings["mo_texts"]
            text = texts[int(unit_hash("mo-text", m.message_id) * len(texts))]
            self._add_mo(m.mobile, text, m.extra.get("ext", ""), m.due_at + 0.001,
                         m.custom_id or "")

    # --- reports -------------------------------------------------------
    def take_due_reports(self, limit: int, now: float | None = None) -> list[Message]:
        """Pop up to ``limit`` due reports; each is handed out once only."""
        now = time.time() if now is None else now
        out: list[Message] = []
        with self.lock:
            heap = self._report_heap
            while heap and len(out) < limit and heap[0][0] <= now:
                _, _, m = heapq.heappop(heap)
                if not m.reported and m.outcome != SILENT:
                    m.reported = True
                    out.append(m)
        return out

    def return_reports(self, messages: Iterable[Message]) -> None:
        """Put reports back (a push that failed is retried later)."""
        with self.lock:
            for m in messages:
                m.reported = False
                heapq.heappush(self._report_heap, (m.due_at, m.seq, m))

    def find(self, message_id: str) -> list[Message]:
        with self.lock:
            return list(self.by_id.get(message_id, ()))

    # --- inbound -------------------------------------------------------
    def _add_mo(self, mobile: str, content: str, destination: str, at: float,
                reference: str = "") -> Inbound:
        mo = Inbound(len(self._mo) + 1, self.vendor, mobile, content, destination, at,
                     reference)
        self._mo.append(mo)
        heapq.heappush(self._mo_heap, (at, mo.seq, mo))
        return mo

    def add_mo(self, mobile: str, content: str, destination: str = "",
               reference: str = "") -> Inbound:
        with self.lock:
            return self._add_mo(mobile, content, destination, time.time(), reference)

    def take_mo(self, limit: int, since: float = 0.0, now: float | None = None
                ) -> list[Inbound]:
        """Pop up to ``limit`` due replies received at or after ``since``; once each."""
        now = time.time() if now is None else now
        out: list[Inbound] = []
        with self.lock:
            keep = []
            while self._mo_heap and len(out) < limit and self._mo_heap[0][0] <= now:
                item = heapq.heappop(self._mo_heap)
                if item[2].received_at >= since:
                    item[2].pulled = True
                    out.append(item[2])
                else:
                    keep.append(item)
            for item in keep:
                heapq.heappush(self._mo_heap, item)
        return out

    def return_mo(self, replies: Iterable[Inbound]) -> None:
        with self.lock:
            for mo in replies:
                mo.pulled = False
                heapq.heappush(self._mo_heap, (mo.received_at, mo.seq, mo))

    # --- statistics ----------------------------------------------------
    def daily_counts(self, now: float | None = None) -> dict[str, dict[str, int]]:
        """Per China-time day of submission: submitted/delivered/failed/unknown.

        A message counts as delivered or failed once its report is due, and as
        unknown before that or when it will never be reported. Every day's
        ``submit`` is off by the ``statistics_extra_submitted`` setting.
        """
        now = time.time() if now is None else now
        extra = int(self.settings.get("statistics_extra_submitted", 0))
        days: dict[str, dict[str, int]] = {}
        with self.lock:
            for m in self.messages:
                day = datetime.fromtimestamp(m.submitted_at, CHINA_TZ).strftime("%Y%m%d")
                row = days.setdefault(day, {"submit": extra, "delivrd": 0, "undeliv": 0,
                                            "unknown": 0})
                row["submit"] += 1
                if m.outcome == SILENT or m.due_at > now:
                    row["unknown"] += 1
                elif m.outcome == DELIVERED:
                    row["delivrd"] += 1
                else:
                    row["undeliv"] += 1
        return days

    # --- templates -----------------------------------------------------
    def register_template(self, text: str, variables: tuple[str, ...]) -> SimTemplate:
        with self.lock:
            tid = template_id()
            reject = float(self.settings["template_rejection_rate"])
            decisions = {c: (2 if unit_hash(self.settings["seed"], tid, c) < reject else 1)
                         for c in ("cmcc", "cucc", "ctcc")}
            t = SimTemplate(tid, text, variables, time.time(), decisions)
            self.templates[tid] = t
            return t

    def add_template(self, tid: str, text: str, variables: tuple[str, ...]) -> SimTemplate:
        """A template the account already had, approved by every carrier."""
        with self.lock:
            t = SimTemplate(tid, text, variables, 0.0, {c: 1 for c in ("cmcc", "cucc", "ctcc")})
            self.templates[tid] = t
            return t

    def template_states(self, template_id: str, now: float | None = None
                        ) -> dict[str, int] | None:
        """Per carrier: 0 pending until the decision time, then 1 approved / 2 rejected."""
        now = time.time() if now is None else now
        t = self.templates.get(template_id)
        if t is None:
            return None
        if now < t.created_at + float(self.settings["template_decision_s"]):
            return {c: 0 for c in t.decisions}
        return dict(t.decisions)


#: Shared by every SimState of the process, so ids never repeat across resets; it
#: starts from the process's start time, so a restarted simulator does not hand out
#: the ids an earlier one did either (reconciliation matches reports to submissions
#: of every campaign on a connection by those ids, as it would a real vendor's).
_SERIAL = [time.time_ns() // 100_000]  # 0.1 ms steps; the next number to hand out
_SERIAL_LOCK = threading.Lock()


def next_serials(count: int) -> range:
    """``count`` consecutive process-wide increasing numbers, in one lock round (a
    request's recipients take theirs at once rather than a lock round each)."""
    with _SERIAL_LOCK:
        start = _SERIAL[0]
        _SERIAL[0] = start + count
    return range(start, start + count)


def next_serial() -> int:
    """A process-wide increasing number, for vendor ids that must never repeat."""
    return next_serials(1)[0]


def template_id() -> str:
    """An FMS template id as the platform issues them: 20 digits (``yyMMddHHmmss`` in
    China time plus eight of the serial), wider than a float keeps exactly and wider
    than a signed 64-bit integer, so only a client that keeps it as text can use it."""
    return f"{datetime.now(CHINA_TZ).strftime('%y%m%d%H%M%S')}{next_serial() % 10**8:08d}"


class SimState:
    """All vendors' state plus the parsed configuration."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.simulation = {**DEFAULT_SIMULATION, **config.get("simulation", {})}
        self.vendors: dict[str, VendorState] = {}
        for name, vconf in config.items():
            if name in ("simulation", "faults") or not isinstance(vconf, dict):
                continue
            settings = {**self.simulation, **vconf.get("simulation", {})}
            if "balance" in vconf:
                settings["balance"] = vconf["balance"]
            self.vendors[name] = VendorState(name, settings)

    def vendor(self, name: str) -> VendorState:
        return self.vendors[name]

    def next_serial(self) -> int:
        """A process-wide increasing number, for vendor ids that must never repeat."""
        return next_serial()

    def next_serials(self, count: int) -> range:
        """``count`` consecutive serials at once (see :func:`next_serials`)."""
        return next_serials(count)

    def all_messages(self, vendor: str | None = None) -> list[dict[str, Any]]:
        out = []
        for name, vs in self.vendors.items():
            if vendor and name != vendor:
                continue
            with vs.lock:
                out.extend(m.as_json() for m in vs.messages)
        return out


def money(items: int, price: str) -> Decimal:
    return Decimal(items) * Decimal(price)
