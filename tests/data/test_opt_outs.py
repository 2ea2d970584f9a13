"""Opt-outs: which replies count, and the suppression list they join (real files)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sms_provider.data.opt_outs import (
    DEFAULT_OPT_OUT_WORDS,
    add_opt_outs,
    is_opt_out,
    load_suppressed,
    words_from_text,
)
from sms_provider.data.prepare import PrepareSettings, prepare
from sms_provider.data.reports import inbound_table
from sms_provider.data.schemas import SUPPRESSION_SCHEMA
from sms_provider.data.storage import DataRoot
from sms_provider.models import InboundMessage


@pytest.fixture
def root(tmp_path: Path) -> DataRoot:
    return DataRoot(tmp_path / "data")


@pytest.mark.parametrize(("reply", "expected"), [
    ("TD", True), (" td ", True), ("退订！", True), ("Stop.", True), ("t", True),
    ("Thanks", False), ("TD please", False), ("", False), ("!!!", False),
])
def test_a_reply_is_an_opt_out_only_when_it_is_the_word_alone(reply, expected) -> None:
    assert is_opt_out(reply) is expected


def test_opt_out_words_from_text_fall_back_to_the_defaults() -> None:
    assert words_from_text(" TD, 退订 ,,") == ("TD", "退订")
    assert words_from_text(" , ") == DEFAULT_OPT_OUT_WORDS
    assert not is_opt_out("STOP", words_from_text("TD"))


def test_add_opt_outs_is_idempotent_and_counts_unusable_numbers(root):
    replies = [InboundMessage("13700137000", "TD", None), InboundMessage("12345", "退订", None),
               InboundMessage("13700137000", "STOP", None), InboundMessage("13700137002", "ok",
                                                                         None)]
    table = inbound_table(replies, conn_id="sms_chuanglan", vendor="chuanglan", source="push")
    first = add_opt_outs(root, "sms_chuanglan", table)
    assert (first.opt_outs, first.suppressed, len(first.paths)) == (3, 1, 1)
    assert first.skipped == {"opt_out_number_invalid": 1, "already_suppressed": 1}
    again = add_opt_outs(root, "sms_chuanglan", table)
    assert again.suppressed == 0 and again.paths == []
    assert again.skipped == {"opt_out_number_invalid": 1, "already_suppressed": 2}
    assert load_suppressed(root).to_pylist() == ["8613700137000"]
    none = add_opt_outs(root, "x", inbound_table([], conn_id="x", vendor="eums", source="pull"))
    assert (none.opt_outs, none.paths) == (0, [])


def test_a_suppressed_reply_stamps_its_time_and_prepare_drops_the_number(root, tmp_path):
    """The row written says who, why, from which connection and when; prepare, reading
    the list through the same module, drops the number in any spelling."""
    at = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    table = inbound_table([InboundMessage("13900139000", "退订", None)], conn_id="sms/eums",
                          vendor="eums", source="pull")
    added = add_opt_outs(root, "sms/eums", table, now=at)
    [path] = added.paths
    assert Path(path).name.startswith("opt_out-sms_eums-")  # the conn id made file-safe
    row = pq.read_table(path, schema=SUPPRESSION_SCHEMA).to_pylist()[0]
    assert row == {"e164": "8613900139000", "reason": "opt_out: 退订", "conn_id": "sms/eums",
                   "added_at": at}
    csv = tmp_path / "recipients.csv"
    csv.write_text("mobile\n+86 139 0013 9000\n13800138000\n")
    summary = prepare(root, str(csv), PrepareSettings("next", "eums", "hello"))
    assert (summary.prepared, summary.reasons) == (1, {"suppressed": 1})
