"""Waits, in the triggerer, until the carriers have decided on a vendor template
(vendors with the templates capability)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


def _states(template: Any) -> dict[str, str]:
    return {carrier: state.value for carrier, state in template.approvals.items()}


class TemplateApprovalTrigger(BaseTrigger):
    """Polls ``querytemplate`` until no carrier is pending (or a poll fails for good)."""

    def __init__(self, sms_conn_id: str, template_id: str, poll_interval: float = 30.0) -> None:
        super().__init__()
        self.sms_conn_id = sms_conn_id
        self.template_id = template_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("sms_provider.triggers.template.TemplateApprovalTrigger",
                {"sms_conn_id": self.sms_conn_id, "template_id": self.template_id,
                 "poll_interval": self.poll_interval})

    def _query(self) -> Any:
        from sms_provider.hooks.sms import hook_for_connection

        with hook_for_connection(self.sms_conn_id).get_client() as client:
            return client.query_template(self.template_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from asgiref.sync import sync_to_async

        from sms_provider.errors import SmsError

        query = sync_to_async(self._query)
        while True:
            try:
                template = await query()
            except SmsError as exc:
                if not exc.retryable:
                    yield TriggerEvent({"status": "error", "template_id": self.template_id,
                                        "message": str(exc)})
                    return
                self.log.warning("template %s: query failed, retrying: %s",
                                 self.template_id, exc)
            else:
                if template.decided:
                    yield TriggerEvent({"status": "decided", "template_id": self.template_id,
                                        "approvals": _states(template)})
                    return
                self.log.info("template %s still pending: %s", self.template_id,
                              _states(template))
            await asyncio.sleep(self.poll_interval)


#: the earlier name: triggers serialised under it (deferred tasks) still load
FmsTemplateApprovalTrigger = TemplateApprovalTrigger
