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
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

KINDS = {"latency", "status", "drop", "accept_drop", "garble", "rate_limit"}


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
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(KINDS)}")
        self._rng = random.Random(self.seed)

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
                "seed": self.seed, "skip": self.skip, "fired": self.fired}


class FaultBook:
    """The active rules; the first rule that fires decides a request's fate."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def set(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._rules = list(rules)

    def add(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._rules.extend(rules)

    def clear(self) -> None:
        self.set([])

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
