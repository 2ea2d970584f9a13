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
from airflow.sdk.exceptions import AirflowFailException

from sms_provider.campaign_config import QuietHours
from sms_provider.errors import RetryableError
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
    """Reads, validates, routes and shards the recipients.

    Returns what ``send`` maps over: one ``{"shard", "sms_conn_id"}`` per shard, each
    shard going through the one connection prepare routed it to; the counts, the
    per-connection figures and the paths go to the ``summary`` XCom.
    """

    template_fields: Sequence[str] = ("campaign_id", "recipients", "sms_conn_id", "content",
                                      "mobile_column", "sms_conn_ids", "weights",
                                      "template_id")

    def __init__(self, *, campaign_id: str, recipients: str, sms_conn_id: str, content: str,
                 mobile_column: str = "mobile", max_shards: int = 8,
                 min_shard_rows: int = 5000, sms_conn_ids: Any = None, weights: Any = None,
                 template_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.campaign_id = campaign_id
        self.recipients = recipients
        self.sms_conn_id = sms_conn_id
        self.content = content
        self.mobile_column = mobile_column
        self.max_shards = max_shards
        self.min_shard_rows = min_shard_rows
        self.sms_conn_ids = sms_conn_ids
        self.weights = weights
        self.template_id = template_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from sms_provider.data.errors import BadInputError
        from sms_provider.data.prepare import PrepareSettings, prepare
        from sms_provider.operators.routing import build_routes, conn_ids_of, weights_of
        from sms_provider.operators.runtime import data_root, local_recipients

        _texts(self, "campaign_id", "recipients", "sms_conn_id", "content", "mobile_column")
        conn_ids = conn_ids_of(self.sms_conn_id, self.sms_conn_ids)
        routes = build_routes(conn_ids, weights_of(conn_ids, self.weights), self.content,
                              template_campaign=bool(optional_text(self.template_id,
                                                                   "template_id")))
        first = routes[0]
        root = data_root()
        try:
            with local_recipients(self.recipients) as path:
                summary = prepare(root, path, PrepareSettings(
                    campaign_id=self.campaign_id, vendor=first.vendor, content=self.content,
                    mobile_column=self.mobile_column, max_content_chars=first.max_content_chars,
                    template_variables=first.template_variables, max_shards=self.max_shards,
                    min_shard_rows=self.min_shard_rows, routes=routes,
                    template_campaign=bool(optional_text(self.template_id, "template_id"))))
        except BadInputError as exc:
            raise AirflowFailException(str(exc)) from None  # a retry reads the same file
        self.log.info("prepared %d of %d rows into %d shard(s), %d rejected %s; estimate %d "
                      "charge items; encoding %s", summary.prepared, summary.input_rows,
                      len(summary.shards), summary.rejected, summary.reasons,
                      summary.estimated_items, summary.encoding)
        for route, figures in zip(routes, summary.routes, strict=True):
            figures["templates"] = route.templates
            self.log.info("route %s (%s): %d recipient(s), shard(s) %s, estimate %d items",
                          figures["conn_id"], figures["vendor"], figures["prepared"],
                          figures["shards"], figures["estimated_items"])
        result = summary.as_dict()
        result["vendor"] = first.vendor
        result["prepared_path"] = root.path(*root.campaign(self.campaign_id, "prepared"))
        result["rejected_path"] = root.path(*root.campaign(self.campaign_id, "rejected"))
        context["ti"].xcom_push(key="summary", value=result)
        return [{"shard": shard, "sms_conn_id": figures["conn_id"]}
                for figures in summary.routes for shard in figures["shards"]]


class CheckBalanceOperator(BaseOperator):
    """Fails early, with the figures, when a connection's balance cannot cover its share
    of the estimate (each connection against the recipients routed to it)."""

    template_fields: Sequence[str] = ("sms_conn_id", "estimated_items", "routes")

    def __init__(self, *, sms_conn_id: str, estimated_items: Any, routes: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sms_conn_id = sms_conn_id
        self.estimated_items = estimated_items
        self.routes = routes

    def execute(self, context: Context) -> dict[str, Any] | None:
        from sms_provider.operators.routing import routes_of

        _texts(self, "sms_conn_id")
        shares = [(text(r["conn_id"], "conn_id"), whole(r["estimated_items"], "estimated_items"))
                  for r in routes_of(self.routes) if r.get("prepared")]
        if not routes_of(self.routes):
            shares = [(self.sms_conn_id, whole(self.estimated_items, "estimated_items"))]
        out: dict[str, Any] = {}
        short: list[str] = []
        routed = len(routes_of(self.routes)) > 1
        for conn_id, estimate in shares:
            try:
                checked, problem = self._check(conn_id, estimate)
            except RetryableError as exc:
                if not routed:
                    raise
                # routed: sending fails over from a connection that stays unreachable
                self.log.warning("%s: balance not known (%s); if it stays unreachable, its "
                                 "recipients fail over to the next connection", conn_id, exc)
                continue
            if checked is not None:
                out[conn_id] = checked
            if problem:
                short.append(problem)
        if short:
            raise AirflowFailException("; ".join(short))
        if len(shares) == 1:
            return out.get(shares[0][0])
        return out or None

    def _check(self, conn_id: str, estimate: int) -> tuple[dict[str, Any] | None, str | None]:
        from sms_provider.data.balance_check import check_balance
        from sms_provider.data.prices import configured_prices

        hook = hook_for_connection(conn_id)
        with hook.get_client() as client:
            if not client.supports(Capability.BALANCE):
                self.log.info("%s: %s has no balance call: check skipped (estimate %d items)",
                              conn_id, client.vendor, estimate)
                return None, None
            balances = client.balance()
            product = getattr(client, "product", None)
        # the price in force now: the connection's price_per_item, else the prices file
        price, currency = hook.pipeline_settings.get("price_per_item"), None
        if price is None:
            found = configured_prices().price_at(conn_id, datetime.now(UTC))
            if found is not None:
                price, currency = found.price_per_item, found.currency
        check = check_balance(balances, estimate, product=product, price_per_item=price,
                              currency=currency)
        if not check.comparable:
            self.log.warning("%s: balance is %s (money) and neither the connection nor the "
                             "prices file gives a price: cannot compare with %d items",
                             conn_id, check.balance.amount, estimate)
            return check.as_dict(), None
        amount = check.estimate_amount
        self.log.info("%s: balance %s %s, its share of the campaign needs %s (estimate %d "
                      "items%s)", conn_id, check.balance.amount, check.balance.unit,
                      check.needed, estimate,
                      f" = {amount} {currency or ''}" if amount is not None else "")
        if not check.enough:
            return None, f"{conn_id}: {check.shortfall()}"
        return check.as_dict(), None


class TemplateApprovalOperator(BaseOperator):
    """Vendors with the templates capability (their profile says so): registers the
    content as a template (unless an id is given) and waits, deferred, until the
    carriers decide. Other vendors: returns "" at once (an XCom ``send`` can always
    pull)."""

    template_fields: Sequence[str] = ("sms_conn_id", "content", "template_id", "routes")

    def __init__(self, *, sms_conn_id: str, content: str, template_id: str | None = None,
                 poll_interval: float = 30.0, approval_timeout: timedelta = timedelta(days=3),
                 routes: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sms_conn_id = sms_conn_id
        self.routes = routes
        self.content = content
        self.template_id = template_id
        self.poll_interval = poll_interval
        self.approval_timeout = approval_timeout

    def execute(self, context: Context) -> str | None:
        from sms_provider.data.content import ContentTemplate
        from sms_provider.operators.routing import routes_of

        _texts(self, "sms_conn_id", "content")
        template_id = optional_text(self.template_id, "template_id")
        routes = routes_of(self.routes)
        if routes:  # routed: the one connection with templates that got recipients, if any
            chosen = [r["conn_id"] for r in routes if r.get("templates") and r.get("prepared")]
            if not chosen:
                return template_id or ""
            self.sms_conn_id = text(chosen[0], "conn_id")  # the trigger polls this one
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

    template_fields: Sequence[str] = ("campaign_id", "sms_conn_id", "template_id", "dry_run",
                                      "sms_conn_ids")

    def __init__(self, *, campaign_id: str, sms_conn_id: str, shard: int,
                 template_id: str | None = None, dry_run: Any = False,
                 concurrency: int | None = None, max_attempts: int = 3,
                 sms_conn_ids: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.campaign_id = campaign_id
        self.sms_conn_id = sms_conn_id
        #: the run's connections in order: where unsent chunks go when this one is down
        self.sms_conn_ids = sms_conn_ids
        self.shard = shard
        self.template_id = template_id
        self.dry_run = dry_run
        self.concurrency = concurrency
        self.max_attempts = max_attempts

    def execute(self, context: Context) -> dict[str, Any]:
        from sms_provider.data.completion import UnfinishedPrepareError
        from sms_provider.data.dry_run import dry_run_submissions
        from sms_provider.data.prepare import read_shard
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
        target = root.campaign(self.campaign_id, "submissions", f"part-{shard:05d}.parquet")
        with hook.get_client() as client:
            if dry_run:
                result_table = dry_run_submissions(
                    table, campaign_id=self.campaign_id, conn_id=self.sms_conn_id,
                    vendor=client.vendor, shard=shard, max_batch=client.max_batch,
                    personalised=client.personalised_batches,
                    custom_id_scope=client.custom_id_scope)
                from sms_provider.data.resend.attempts import with_attempt_columns

                root.write_table(with_attempt_columns(result_table, table), *target)
                self.log.info("dry run: %d recipients in shard %d would be sent, nothing sent",
                              result_table.num_rows, shard)
                return {"shard": shard, "dry_run": result_table.num_rows}
        from sms_provider.operators.shard_send import send_with_failover

        return send_with_failover(self, context, root, shard, table, template_id)


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
