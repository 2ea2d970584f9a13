"""Message ids held as numbers only where the text comes back unchanged."""

from __future__ import annotations

import pyarrow as pa

from sms_provider.data.reconcile.columns import as_text
from sms_provider.data.reconcile.matching import as_numbers, canonical_ints, lookup

NOT_NUMBERS = ["0123", "+5", "-5", " 5", "5 ", "1e5", "", "9223372036854775808",
               "99999999999999999999", "12a", "0x1F", "-0", "00"]


def test_only_plain_numbers_an_int64_gives_back_become_numbers() -> None:
    plain = ["0", "7", "10", "999999999999999999", "1000000000000000000",
             "9223372036854775807", None]
    assert canonical_ints(pa.array(plain)).tolist() == [
        0, 7, 10, 999999999999999999, 10**18, 2**63 - 1, -1]
    for text in NOT_NUMBERS:
        assert canonical_ints(pa.array(["1", text])) is None, text
    column = pa.chunked_array([pa.array(plain)])
    assert as_text(as_numbers(column)).to_pylist() == plain  # written back as it was
    odd = pa.chunked_array([pa.array(["1", "0123"])])
    assert as_numbers(odd).to_pylist() == ["1", "0123"]  # one odd id: all stay text


def test_a_probe_that_is_no_plain_number_matches_nothing() -> None:
    known = [pa.array(["5", "123", "0"])]
    probe = [pa.array(["123", "0123", "+5", "5", None, "0"])]
    assert lookup(known, probe).tolist() == [1, -1, -1, 0, -1, 2]
