"""The campaign's tasks. Each one wires a connection and the data root to a pure step.

Operators pass paths and counts through XCom, never rows. The data plane
(pyarrow, pandas, phonenumbers) is imported inside ``execute``: DAG files that
use these operators must stay cheap to parse.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from sms_provider.campaign_config import QuietHours
from sms_provider.hooks.sms import hook_for_connection
from sms_provider.models import ApprovalState
from sms_provider.operators.values import flag, optional_text, text, whole
from sms_provider.vendors.base import Capability

if TYPE_CHECKING:
    pass


def _texts(op: BaseOperator, *names: str) -> None:
    """Checks that each rendered text field is still the string it was given."""
    for name in names:
        setattr(op, name, text(getattr(op, name), name))


class PrepareRecipientsOperator(BaseOperator):
    """Reads, validates and shards the recipients.

    Returns the shard numbers (what ``send`` maps over); the counts and paths go
    to the ``summary`` XCom.
    """

    template_fields: Sequence[str] = ("campaign_id", "recipients", "sms_conn_id", "content",
                                      "mobile_column")

    def __init__(self, *, campaign_id: str, recipients: str, sms_conn_id: str, content: str,
                 mobile_column: str = "mobile", max_shards: int = 8,
                 min_shard_rows: int = 5000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.campaign_id = campaign_id
        self.recipients = recipients
        self.sms_conn_id = sms_conn_id
        self.content = content
        self.mobile_column = mobile_column
        self.max_shards = max_shards
        self.min_shard_rows = min_shard_rows

    def execute(self, context: Context) -> list[int]:
        from sms_provider.data.content import ContentTemplate
        from sms_provider.data.errors import BadInputError
        from sms_provider.data.prepare import PrepareSettings, prepare
        from sms_provider.operators.runtime import data_root, local_recipients

        _texts(self, "campaign_id", "recipients", "sms_conn_id", "content", "mobile_column")
        with hook_for_connection(self.sms_conn_id).get_client() as client:
            vendor, limit = client.vendor, getattr(client, "max_content_chars", None)
            templates = client.supports(Capability.TEMPLATES)
        root = data_root()
        try:
            template_vars = (ContentTemplate.parse(self.content).variables if templates
                             else None)
            with local_recipients(self.recipients) as path:
                summary = prepare(root, path, PrepareSettings(
                    campaign_id=self.campaign_id, vendor=vendor, content=self.content,
                    mobile_column=self.mobile_column, max_content_chars=limit,
                    template_variables=template_vars, max_shards=self.max_shards,
                    min_shard_rows=self.min_shard_rows))
        except BadInputError as exc:
            raise AirflowFailException(str(exc)) from None  # a retry reads the same file
        self.log.info("prepared %d of %d rows into %d shard(s), %d rejected %s; estimate %d "
                      "charge items; encoding %s", summary.prepared, summary.input_rows,
                      len(summary.shards), summary.rejected, summary.reasons,
                      summary.estimated_items, summary.encoding)
        result = summary.as_dict()
        result["vendor"] = vendor
        result["prepared_path"] = root.path(*root.campaign(self.campaign_id, "prepared"))
        result["rejected_path"] = root.path(*root.campaign(self.campaign_id, "rejected"))
        context["ti"].xcom_push(key="summary", value=result)
        return summary.shards


class CheckBalanceOperator(BaseOperator):
    """Fails early, with the figures, when the balance cannot cover the estimate."""

    template_fields: Sequence[str] = ("sms_conn_id", "estimated_items")

    def __init__(self, *, sms_conn_id: str, estimated_items: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sms_conn_id = sms_conn_id
        self.estimated_items = estimated_items

    def execute(self, context: Context) -> dict[str, Any] | None:
        from sms_provider.data.balance_check import check_balance
        from sms_provider.data.prices import configured_prices

        _texts(self, "sms_conn_id")
        estimate = whole(self.estimated_items, "estimated_items")
        hook = hook_for_connection(self.sms_conn_id)
        with hook.get_client() as client:
            if not client.supports(Capability.BALANCE):
                self.log.info("%s has no balance call: check skipped (estimate %d items)",
                              client.vendor, estimate)
                return None
            balances = client.balance()
            product = getattr(client, "product", None)
        # the price in force now: the connection's price_per_item, else the prices file
        price, currency = hook.pipeline_settings.get("price_per_item"), None
        if price is None:
            found = configured_prices().price_at(self.sms_conn_id, datetime.now(UTC))
            if found is not None:
                price, currency = found.price_per_item, found.currency
        check = check_balance(balances, estimate, product=product, price_per_item=price,
                              currency=currency)
        if not check.comparable:
            self.log.warning("balance is %s (money) and neither the connection nor the "
                             "prices file gives a price: cannot compare with %d items",
                             check.balance.amount, estimate)
            return check.as_dict()
        amount = check.estimate_amount
        self.log.info("balance %s %s, the campaign needs %s (estimate %d items%s)",
                      check.balance.amount, check.balance.unit, check.needed, estimate,
                      f" = {amount} {currency or ''}" if amount is not None else "")
        if not check.enough:
            raise AirflowFailException(check.shortfall())
        return check.as_dict()


class TemplateApprovalOperator(BaseOperator):
    """Vendors with the templates capability (their profile says so): registers the
    content as a template (unless an id is given) and waits, deferred, until the
    carriers decide. Other vendors: returns "" at once (an XCom ``send`` can always
    pull)."""

    template_fields: Sequence[str] = ("sms_conn_id", "content", "template_id")

    def __init__(self, *, sms_conn_id: str, content: str, template_id: str | None = None,
                 poll_interval: float = 30.0, approval_timeout: timedelta = timedelta(days=3),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sms_conn_id = sms_conn_id
        self.content = content
        self.template_id = template_id
        self.poll_interval = poll_interval
        self.approval_timeout = approval_timeout

    def execute(self, context: Context) -> str | None:
        from sms_provider.data.content import ContentTemplate

        _texts(self, "sms_conn_id", "content")
        template_id = optional_text(self.template_id, "template_id")
        with hook_for_connection(self.sms_conn_id).get_client() as client:
            if not client.supports(Capability.TEMPLATES):
                return template_id or ""
            if template_id is None:
                body = ContentTemplate.parse(self.content).vendor_template()
                template_id = client.register_template(body).template_id
                self.log.info("registered template %s", template_id)
            template = client.query_template(template_id)
        if template.decided:
            return self._decided(template_id, {c: s.value for c, s in template.approvals.items()})
        from sms_provider.triggers.template import TemplateApprovalTrigger

        self.defer(trigger=TemplateApprovalTrigger(self.sms_conn_id, template_id,
                                                   self.poll_interval),
                   method_name="execute_complete", timeout=self.approval_timeout)
        return None  # not reached: defer raises

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        if event.get("status") != "decided":
            raise AirflowFailException(f"template {event.get('template_id')}: "
                                       f"{event.get('message', 'approval query failed')}")
        return self._decided(event["template_id"], event["approvals"])

    def _decided(self, template_id: str, approvals: dict[str, str]) -> str:
        self.log.info("template %s approvals: %s", template_id, approvals)
        if ApprovalState.APPROVED.value not in approvals.values():
            raise AirflowFailException(f"template {template_id} was approved by no carrier: "
                                       f"{approvals}")
        return text(template_id, "template_id")  # send reads this XCom: it must stay text


#: the earlier name, kept for DAGs that import it
FmsTemplateOperator = TemplateApprovalOperator


class SendWindowOperator(BaseOperator):
    """Defers, holding no worker slot, while the recipients' quiet hours last."""

    def __init__(self, *, quiet_hours: dict[str, str] | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.quiet_hours = quiet_hours

    def execute(self, context: Context) -> None:
        if not self.quiet_hours:
            return
        window = QuietHours.parse(self.quiet_hours)
        now = datetime.now(UTC)
        if not window.contains(now):
            return
        opens = window.window_end(now)
        self.log.info("inside quiet hours %s: waiting until %s", window.as_dict(), opens)
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        self.defer(trigger=DateTimeTrigger(opens.astimezone(UTC)),
                   method_name="execute_complete")

    def execute_complete(self, context: Context, event: Any = None) -> None:
        self.log.info("quiet hours over: sending")


class SendShardOperator(BaseOperator):
    """Sends one prepared shard through the ledger; safe to retry, clear or rerun."""

    template_fields: Sequence[str] = ("campaign_id", "sms_conn_id", "template_id", "dry_run")

    def __init__(self, *, campaign_id: str, sms_conn_id: str, shard: int,
                 template_id: str | None = None, dry_run: Any = False,
                 concurrency: int | None = None, max_attempts: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.campaign_id = campaign_id
        self.sms_conn_id = sms_conn_id
        self.shard = shard
        self.template_id = template_id
        self.dry_run = dry_run
        self.concurrency = concurrency
        self.max_attempts = max_attempts

    def execute(self, context: Context) -> dict[str, Any]:
        from sms_provider.data.completion import UnfinishedPrepareError
        from sms_provider.data.dry_run import dry_run_submissions
        from sms_provider.data.ledger import (
            LedgerLockedError,
            LedgerMismatchError,
            SenderIdentity,
        )
        from sms_provider.data.locations import open_ledger
        from sms_provider.data.prepare import read_shard
        from sms_provider.data.send import ShardSender
        from sms_provider.operators.runtime import data_root

        _texts(self, "campaign_id", "sms_conn_id")
        template_id = optional_text(self.template_id, "template_id")
        dry_run = flag(self.dry_run, "dry_run")
        root = data_root()
        shard = whole(self.shard, "shard")
        try:
            table = read_shard(root, self.campaign_id, shard)
        except UnfinishedPrepareError as exc:
            raise AirflowFailException(str(exc)) from None  # a retry finds the same marker
        hook = hook_for_connection(self.sms_conn_id)
        concurrency = self.concurrency or hook.pipeline_settings.get("send_concurrency", 4)
        target = root.campaign(self.campaign_id, "submissions", f"part-{shard:05d}.parquet")
        with hook.get_client() as client:
            if dry_run:
                result_table = dry_run_submissions(
                    table, campaign_id=self.campaign_id, conn_id=self.sms_conn_id,
                    vendor=client.vendor, shard=shard, max_batch=client.max_batch,
                    personalised=client.personalised_batches,
                    custom_id_scope=client.custom_id_scope)
                root.write_table(result_table, *target)
                self.log.info("dry run: %d recipients in shard %d would be sent, nothing sent",
                              result_table.num_rows, shard)
                return {"shard": shard, "dry_run": result_table.num_rows}
            ti = context["ti"]
            # who sends, as the ledger records it: a later try of this very task instance
            # knows an intent of an earlier try for abandoned, another run's for not
            owner = SenderIdentity.current(
                task=f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}",
                attempt=ti.try_number)
            try:
                ledger = open_ledger(root)
                try:
                    result = ShardSender(client, ledger, self.campaign_id, shard,
                                         conn_id=self.sms_conn_id, template_id=template_id,
                                         concurrency=concurrency,
                                         max_attempts=self.max_attempts,
                                         owner=owner).run(table)
                finally:
                    ledger.close()
            except LedgerMismatchError as exc:
                raise AirflowFailException(str(exc)) from None  # a retry cannot fix it
            except LedgerLockedError as exc:
                raise AirflowException(f"shard {shard}: {exc}") from None  # retryable
        root.write_table(result.table, *target)
        self.log.info("shard %d: %s; submissions at %s", shard, result.counts,
                      root.path(*target))
        if result.errors and result.errors[0].startswith("sending stopped"):
            raise AirflowFailException(f"shard {shard}: {result.errors[0]}")
        if not result.complete:
            raise AirflowException(
                f"shard {shard}: {result.unsent_chunks} request(s) not sent yet (nothing was "
                f"sent twice; a retry sends only those): {'; '.join(result.errors[:3])}")
        return {"shard": shard, **result.counts}


class CampaignSummaryOperator(BaseOperator):
    """Counts per status and where the Parquet went, in the task log and XCom."""

    template_fields: Sequence[str] = ("campaign_id",)

    def __init__(self, *, campaign_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.campaign_id = campaign_id

    def execute(self, context: Context) -> dict[str, Any]:
        from sms_provider.data.summary import campaign_summary
        from sms_provider.operators.runtime import data_root

        _texts(self, "campaign_id")
        out = campaign_summary(data_root(), self.campaign_id)
        for key, value in out.items():
            self.log.info("%-16s %s", key, value)
        return out
