"""Faults on demand: latency, 5xx, dropped connections, lost answers, garbage, rate limits.

A rule matches requests by vendor and path substring and fires with a
probability (drawn from its own seeded RNG, in request order) and/or for the
next ``count`` matching requests, after letting the first ``skip`` matches
pass (so a test can hold exactly the 46th send). Kinds:

* ``latency``       sleep ``latency_s`` then answer normally
* ``status``        answer HTTP ``status`` (default 503) without processing;
                    with ``"after": true`` process first, then answer the status
* ``drop``          close the connection without processing
* ``accept_drop``   process (the vendor accepts), then close without answering
* ``garble``        process, then answer 200 with a nonsense body
* ``rate_limit``    the vendor's own "too fast" answer, without processing
* ``hold``          keep the request, unprocessed, until ``POST /_sim/release`` (or
                    for at most ``latency_s`` seconds, :data:`MAX_HOLD_S` when unset),
                    then answer normally: a test decides exactly when a request that
                    is on the wire gets its answer
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

KINDS = {"latency", "status", "drop", "accept_drop", "garble", "rate_limit", "hold"}
#: how long a ``hold`` keeps a request when its rule sets no ``latency_s``: a test that
#: never releases it must not leave the simulator's threads waiting for ever
MAX_HOLD_S = 120.0


@dataclass
class FaultRule:
    kind: str
    vendor: str = "*"
    path: str = ""
    probability: float = 1.0
    count: int | None = None
    latency_s: float = 0.0
    status: int = 503
    after: bool = False
    seed: int = 0
    skip: int = 0
    fired: int = 0
    seen: int = 0
    held: int = 0
    _rng: random.Random = field(init=False, repr=False)
    _released: threading.Event = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(KINDS)}")
        self._rng = random.Random(self.seed)
        self._released = threading.Event()

    def hold(self) -> None:
        """Keep the calling request until the rule is released or its time is up."""
        self.held += 1
        try:
            self._released.wait(self.latency_s or MAX_HOLD_S)
        finally:
            self.held -= 1

    def release(self) -> None:
        self._released.set()

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> FaultRule:
        allowed = {"kind", "vendor", "path", "probability", "count", "latency_s", "status",
                   "after", "seed", "skip"}
        unknown = set(obj) - allowed
        if unknown:
            raise ValueError(f"unknown fault rule keys {sorted(unknown)}")
        return cls(**obj)

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "vendor": self.vendor, "path": self.path,
                "probability": self.probability, "count": self.count,
                "latency_s": self.latency_s, "status": self.status, "after": self.after,
                "seed": self.seed, "skip": self.skip, "fired": self.fired,
                "held": self.held}


class FaultBook:
    """The active rules; the first rule that fires decides a request's fate."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def set(self, rules: list[FaultRule]) -> None:
        with self._lock:
            old, self._rules = self._rules, list(rules)
        for rule in old:  # a request held by a rule that is gone goes on at once
            if not any(rule is kept for kept in rules):
                rule.release()

    def add(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._rules.extend(rules)

    def clear(self) -> None:
        self.set([])

    def release(self) -> int:
        """Let every held request (and any later one of a ``hold`` rule) through."""
        with self._lock:
            holds = [rule for rule in self._rules if rule.kind == "hold"]
        for rule in holds:
            rule.release()
        return sum(rule.held for rule in holds)

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.as_json() for r in self._rules]

    def pick(self, vendor: str, path: str) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if rule.vendor not in ("*", vendor) or rule.path not in path:
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                if rule.count is not None and rule.fired >= rule.count:
                    continue
                if rule.probability < 1.0 and rule._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                return rule
        return None
