"""Whether a vendor balance covers a campaign's estimated charge items.

Pure arithmetic, so the check-balance task only fetches the balance and acts on
the verdict. Balances in ``items`` compare directly; a ``money`` balance (a
vendor whose profile bills in money) needs a price per item (the connection's
``price_per_item``, else the prices file's price in force), and without one no
verdict is possible. Where a price is known the estimate is also given in money.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sms_provider.models import Balance


@dataclass(frozen=True)
class BalanceCheck:
    """The balance compared, what the campaign needs in its unit (None: cannot tell)."""

    balance: Balance
    estimate: int
    needed: Decimal | None
    price_per_item: Decimal | None = None
    currency: str | None = None

    @property
    def comparable(self) -> bool:
        return self.needed is not None

    @property
    def enough(self) -> bool:
        """True unless the balance is certainly short (no verdict counts as enough)."""
        return self.needed is None or self.balance.amount >= self.needed

    def shortfall(self) -> str:
        """Why the campaign cannot go, and what to do."""
        b = self.balance
        return (f"balance {b.amount} {b.unit} cannot cover the estimate of {self.estimate} "
                f"charge items ({self.needed} {b.unit}); top up, then clear this task")

    def as_dict(self) -> dict[str, Any]:
        """The figures as text, for XCom."""
        out: dict[str, Any] = {"balance": str(self.balance.amount), "unit": self.balance.unit}
        if self.needed is None:
            out["estimate"] = self.estimate
        else:
            out["needed"] = str(self.needed)
        if self.price_per_item is not None:
            out.update(estimate_amount=str(self.estimate_amount),
                       price_per_item=str(self.price_per_item), currency=self.currency)
        return out

    @property
    def estimate_amount(self) -> Decimal | None:
        """The estimate in money, where a price is known."""
        return None if self.price_per_item is None else Decimal(self.estimate) * self.price_per_item


def check_balance(balances: Sequence[Balance], estimate: int, *, product: str | None = None,
                  price_per_item: Decimal | None = None,
                  currency: str | None = None) -> BalanceCheck:
    """Compare the balance of ``product`` (the first balance when none matches) with
    ``estimate`` charge items."""
    if not balances:
        raise ValueError("the vendor reported no balance")
    chosen = next((b for b in balances if product and b.product == product), balances[0])
    if chosen.unit == "money":
        needed = None if price_per_item is None else Decimal(estimate) * price_per_item
    else:
        needed = Decimal(estimate)
    return BalanceCheck(chosen, estimate, needed, price_per_item, currency)
