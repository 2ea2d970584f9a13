"""Campaign files and quiet hours: parsing, and errors that name file and field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time
from pathlib import Path

import pytest

from sms_provider.campaign_config import CampaignFileError, QuietHours, load_campaign

GOOD = {"campaign_id": "spring-sale-01", "recipients": "include/recipients.csv",
        "conn_id": "sms_eums", "content": "【Shop】Hi {name}", "schedule": "0 9 * * 1"}


def write(tmp_path: Path, data: object, name: str = "c.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_a_good_file_with_cron_and_quiet_hours(tmp_path) -> None:
    spec = load_campaign(write(tmp_path, {**GOOD, "quiet_hours": {
        "start": "21:00", "end": "08:00", "timezone": "Asia/Shanghai"}}))
    assert spec.dag_id == "sms_campaign__spring-sale-01"
    assert spec.cron == "0 9 * * 1" and spec.start_at is None
    assert spec.conf["mobile_column"] == "mobile" and spec.conf["dry_run"] is False
    assert spec.quiet_hours == QuietHours(time(21), time(8), "Asia/Shanghai")
    assert spec.conf["recipients"] == str((tmp_path / "include/recipients.csv").resolve())


def test_a_one_off_start_time(tmp_path) -> None:
    spec = load_campaign(write(tmp_path, {**GOOD, "schedule": "2026-12-01T09:00:00+08:00"}))
    assert spec.cron is None and spec.start_at == datetime.fromisoformat(
        "2026-12-01T09:00:00+08:00")


@pytest.mark.parametrize(("change", "message"), [
    ({"schedule": "every monday"}, "field 'schedule'"),
    ({"schedule": "2026-12-01T09:00:00"}, "needs a UTC offset"),
    ({"campaign_id": "bad id!"}, "field 'campaign_id'"),
    ({"conn_id": 5}, "field 'conn_id' must be a string"),
    ({"dry_run": "yes"}, "field 'dry_run'"),
    ({"colour": "red"}, "unknown field(s) colour"),
    ({"quiet_hours": {"start": "21:00"}}, "field 'quiet_hours'.end: missing"),
    ({"quiet_hours": {"start": "9pm", "end": "8am"}}, "HH:MM"),
    ({"quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Mars/Base"}},
     "unknown time zone"),
])
def test_errors_name_the_file_and_field(tmp_path, change, message) -> None:
    path = write(tmp_path, {**GOOD, **change})
    with pytest.raises(CampaignFileError) as err:
        load_campaign(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_field_and_bad_json(tmp_path) -> None:
    data = dict(GOOD)
    del data["content"]
    with pytest.raises(CampaignFileError, match="field 'content' is required"):
        load_campaign(write(tmp_path, data))
    with pytest.raises(CampaignFileError, match="not valid JSON at line 1"):
        load_campaign(write(tmp_path, "{nope", "broken.json"))


def test_quiet_hours_across_midnight() -> None:
    quiet = QuietHours(time(21), time(8), "Asia/Shanghai")
    at = lambda h, m=0: datetime(2026, 11, 23, h, m, tzinfo=UTC)  # noqa: E731 - UTC+8 below
    assert quiet.contains(at(14))          # 22:00 in Shanghai
    assert quiet.contains(at(23, 30))      # 07:30 next day
    assert not quiet.contains(at(0))       # 08:00: open again
    assert not quiet.contains(at(5))       # 13:00
    assert quiet.window_end(at(14)) == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    assert quiet.window_end(at(23, 30)) == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


def test_quiet_hours_within_a_day() -> None:
    quiet = QuietHours(time(12), time(14), "UTC")
    assert quiet.contains(datetime(2026, 1, 1, 13, tzinfo=UTC))
    assert not quiet.contains(datetime(2026, 1, 1, 14, tzinfo=UTC))
    assert quiet.window_end(datetime(2026, 1, 1, 13, tzinfo=UTC)) == datetime(
        2026, 1, 1, 14, tzinfo=UTC)
