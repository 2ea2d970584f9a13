"""The balance-versus-estimate arithmetic, without Airflow."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sms_provider.data.balance_check import check_balance
from sms_provider.models import Balance


def test_items_compare_directly_and_a_shortfall_says_what_to_do() -> None:
    ok = check_balance([Balance(Decimal(100))], 100)
    assert ok.enough and ok.as_dict() == {"balance": "100", "unit": "items", "needed": "100"}
    short = check_balance([Balance(Decimal(99))], 100)
    assert not short.enough
    assert short.shortfall() == ("balance 99 items cannot cover the estimate of 100 charge "
                                 "items (100 items); top up, then clear this task")


def test_the_product_balance_is_chosen_and_money_needs_a_price() -> None:
    balances = [Balance(Decimal(5), product="a"), Balance(Decimal(500), product="b")]
    assert check_balance(balances, 50, product="b").enough
    assert not check_balance(balances, 50, product="missing").enough  # the first one
    money = [Balance(Decimal("4.00"), unit="money")]
    unpriced = check_balance(money, 100)
    assert not unpriced.comparable and unpriced.enough
    assert unpriced.as_dict() == {"balance": "4.00", "unit": "money", "estimate": 100}
    priced = check_balance(money, 100, price_per_item=Decimal("0.05"))
    assert priced.needed == Decimal("5.00") and not priced.enough
    with pytest.raises(ValueError, match="no balance"):
        check_balance([], 1)
