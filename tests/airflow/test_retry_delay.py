"""``SMS_TASK_RETRY_DELAY``: the campaign tasks' retry delay, read where the DAG is parsed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sms_provider.dag_builders.campaign import ENV_RETRY_DELAY, build_campaign_dag


def send_retry_delay() -> timedelta:
    return build_campaign_dag("sms_campaign_retry").get_task("send").retry_delay


def test_the_default_is_thirty_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_RETRY_DELAY, raising=False)
    assert send_retry_delay() == timedelta(seconds=30)


def test_the_variable_sets_the_send_tasks_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_RETRY_DELAY, "2.5")
    assert send_retry_delay() == timedelta(seconds=2.5)
    dag = build_campaign_dag("sms_campaign_retry_all")
    assert dag.get_task("prepare").retry_delay == timedelta(seconds=2.5)
    assert dag.get_task("send").retries == 2  # the number of tries is unchanged


@pytest.mark.parametrize("bad", ["soon", "-1", "nan"])
def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv(ENV_RETRY_DELAY, bad)
    with pytest.raises(ValueError, match=ENV_RETRY_DELAY):
        build_campaign_dag("sms_campaign_retry_bad")
