"""Campaign files (``include/campaigns/*.json``) and quiet hours, parsed without Airflow.

A campaign file holds the same fields as the ``sms_campaign`` conf plus
``schedule`` (a cron expression, or an ISO start time for a one-off) and an
optional ``quiet_hours`` window in the recipients' time zone. Every error
names the file and the field, because it becomes the DAG's import error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CAMPAIGN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
CONF_FIELDS = {"campaign_id", "recipients", "conn_id", "content", "mobile_column",
               "template_id", "dry_run", "conn_ids", "weights"}
FILE_FIELDS = CONF_FIELDS | {"schedule", "quiet_hours", "description"}
REQUIRED = ("campaign_id", "recipients", "content", "schedule")


class CampaignFileError(ValueError):
    """A campaign file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class QuietHours:
    """A daily window in which nothing is sent, e.g. 21:00-08:00 Asia/Shanghai."""

    start: time
    end: time
    timezone: str = "Asia/Shanghai"

    @classmethod
    def parse(cls, value: Any, where: str = "quiet_hours") -> QuietHours:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object with start, end and timezone")
        unknown = set(value) - {"start", "end", "timezone"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        try:
            start = time.fromisoformat(str(value["start"]))
            end = time.fromisoformat(str(value["end"]))
        except KeyError as exc:
            raise ValueError(f"{where}.{exc.args[0]}: missing") from None
        except ValueError:
            raise ValueError(f"{where}: start and end must be HH:MM (or HH:MM:SS) times"
                             ) from None
        tz = str(value.get("timezone", "Asia/Shanghai"))
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{where}.timezone: unknown time zone {tz!r}") from None
        if start == end:
            raise ValueError(f"{where}: start and end are equal")
        return cls(start, end, tz)

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.timezone)).time()
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # the window crosses midnight

    def window_end(self, moment: datetime) -> datetime:
        """When the quiet window that contains ``moment`` opens for sending again."""
        tz = ZoneInfo(self.timezone)
        local = moment.astimezone(tz)
        end = local.replace(hour=self.end.hour, minute=self.end.minute,
                            second=self.end.second, microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        return end

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(),
                "timezone": self.timezone}


@dataclass(frozen=True)
class CampaignSpec:
    path: Path
    campaign_id: str
    conf: dict[str, Any]
    cron: str | None = None
    start_at: datetime | None = None
    quiet_hours: QuietHours | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dag_id(self) -> str:
        return f"sms_campaign__{self.campaign_id}"


def _fail(path: Path, message: str) -> CampaignFileError:
    return CampaignFileError(f"{path}: {message}")


def _parse_schedule(path: Path, value: Any) -> tuple[str | None, datetime | None]:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, "field 'schedule': expected a cron expression or an ISO start time")
    text = value.strip()
    if re.match(r"^\d{4}-\d{2}-\d{2}", text):
        try:
            start = datetime.fromisoformat(text)
        except ValueError:
            raise _fail(path, f"field 'schedule': {text!r} is not a valid ISO time") from None
        if start.tzinfo is None:
            raise _fail(path, f"field 'schedule': {text!r} needs a UTC offset, "
                              "e.g. 2026-12-01T09:00:00+08:00")
        return None, start
    from croniter import croniter  # declared in pyproject.toml; cheap to import

    if not croniter.is_valid(text):
        raise _fail(path, f"field 'schedule': {text!r} is neither a cron expression nor an "
                          "ISO start time")
    return text, None


def _check_routing(path: Path, data: dict[str, Any]) -> None:
    """``conn_id`` or ``conn_ids`` (an ordered list of one or more), and ``weights`` for
    listed connections only: checked by the same rules the campaign's prepare applies."""
    from sms_provider.data.routing import RoutingError, check_weights, conn_list

    if not data.get("conn_id") and not data.get("conn_ids"):
        raise _fail(path, "field 'conn_id' (or 'conn_ids') is required")
    try:
        ids = conn_list(data.get("conn_id"), data.get("conn_ids"))
        check_weights(ids, data.get("weights"))
    except RoutingError as exc:
        raise _fail(path, f"field {'weights' if 'weights' in str(exc) else 'conn_ids'!r}: "
                          f"{exc}") from None


def load_campaign(path: Path) -> CampaignSpec:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise _fail(path, f"not valid JSON at line {exc.lineno} column {exc.colno}: "
                          f"{exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, f"cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise _fail(path, "expected a JSON object")
    unknown = set(data) - FILE_FIELDS
    if unknown:
        raise _fail(path, f"unknown field(s) {', '.join(sorted(unknown))}; "
                          f"allowed: {', '.join(sorted(FILE_FIELDS))}")
    for name in REQUIRED:
        if name not in data or data[name] in (None, ""):
            raise _fail(path, f"field {name!r} is required")
    for name in ("recipients", "conn_id", "content", "mobile_column", "template_id"):
        if name in data and data[name] is not None and not isinstance(data[name], str):
            raise _fail(path, f"field {name!r} must be a string")
    _check_routing(path, data)
    campaign_id = data["campaign_id"]
    if not isinstance(campaign_id, str) or not CAMPAIGN_ID.match(campaign_id):
        raise _fail(path, "field 'campaign_id': letters, digits, '.', '_' and '-' only, "
                          "at most 100 characters")
    if "dry_run" in data and not isinstance(data["dry_run"], bool):
        raise _fail(path, "field 'dry_run' must be true or false")
    cron, start_at = _parse_schedule(path, data["schedule"])
    quiet = None
    if data.get("quiet_hours") is not None:
        try:
            quiet = QuietHours.parse(data["quiet_hours"], "field 'quiet_hours'")
        except ValueError as exc:
            raise _fail(path, str(exc)) from None
    conf = {k: data[k] for k in CONF_FIELDS if k in data}
    recipients = conf["recipients"]
    if "://" not in recipients and not Path(recipients).is_absolute():
        # Relative to the campaign file, not to whatever directory a worker runs in.
        conf["recipients"] = str((path.parent / recipients).resolve())
    conf.setdefault("mobile_column", "mobile")
    conf.setdefault("template_id", None)
    conf.setdefault("dry_run", False)
    return CampaignSpec(path, campaign_id, conf, cron, start_at, quiet,
                        str(data.get("description", "")))
