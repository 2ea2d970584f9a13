"""The send task's work: a shard through its connection, with failover where the run
routes over several (``sms_provider.data.failover``), and its outputs written.

Each leg (the shard itself, then each move's recipients) writes its own
submissions file, every row carrying the connection it went through; the
moves go to ``campaigns/<id>/moves/`` as well as the ledger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from sms_provider.hooks.sms import hook_for_connection
from sms_provider.operators.routing import build_routes, conn_ids_of
from sms_provider.vendors.base import Capability

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import BaseOperator, Context

    from sms_provider.data.storage import DataRoot


def send_with_failover(op: BaseOperator, context: Context, root: DataRoot, shard: int,
                       table: pa.Table, template_id: str | None) -> dict[str, Any]:
    from sms_provider.data.failover import FailoverSender, MoveBook, leg_summary
    from sms_provider.data.failover.sender import DEFAULT_FAILOVER_AFTER_S, STOPPED
    from sms_provider.data.ledger import LedgerLockedError, LedgerMismatchError, SenderIdentity
    from sms_provider.data.locations import open_ledger
    from sms_provider.data.resend.attempts import with_attempt_columns
    from sms_provider.data.send import ShardSender

    campaign_id, conn_id = op.campaign_id, op.sms_conn_id
    conn_ids = conn_ids_of(conn_id, op.sms_conn_ids)
    if conn_id not in conn_ids:
        conn_ids = [conn_id]  # a shard sent on its own (a test, an older run): no failover
    routes = build_routes(conn_ids, {}, "", template_campaign=False)
    ti = context["ti"]
    # who sends, as the ledger records it: a later try of this very task instance knows
    # an intent of an earlier try for abandoned, another run's for not
    owner = SenderIdentity.current(task=f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}",
                                   attempt=ti.try_number)

    def settings(conn: str) -> dict[str, Any]:
        return hook_for_connection(conn).pipeline_settings

    def make_sender(client: Any, conn: str, leg_shard: int, retries: bool) -> ShardSender:
        own_template = template_id if client.supports(Capability.TEMPLATES) else None
        return ShardSender(client, ledger, campaign_id, leg_shard, conn_id=conn,
                           template_id=own_template,
                           concurrency=op.concurrency or settings(conn).get("send_concurrency",
                                                                            4),
                           max_attempts=op.max_attempts if retries else 1, owner=owner)

    try:
        ledger = open_ledger(root)
        try:
            legs = FailoverSender(
                campaign_id=campaign_id, routes=routes, book=MoveBook(ledger),
                open_client=lambda conn: hook_for_connection(conn).get_client(),
                make_sender=make_sender,
                failover_after=lambda conn: float(settings(conn).get(
                    "failover_after_s") or DEFAULT_FAILOVER_AFTER_S),
            ).run(shard, conn_id, table)
        finally:
            ledger.close()
    except LedgerMismatchError as exc:
        raise AirflowFailException(str(exc)) from None  # a retry cannot fix it
    except LedgerLockedError as exc:
        raise AirflowException(f"shard {shard}: {exc}") from None  # retryable
    counts: dict[str, int] = {}
    for leg in legs:
        target = root.campaign(campaign_id, "submissions", f"part-{leg.shard:05d}.parquet")
        root.write_table(with_attempt_columns(leg.result.table, table), *target)
        op.log.info("shard %d through %s: %s; submissions at %s", leg.shard, leg.conn_id,
                    leg.result.counts, root.path(*target))
        for key, value in leg.result.counts.items():
            counts[key] = counts.get(key, 0) + value
    summary = leg_summary(legs)
    if summary["moves"]:
        _write_moves(root, campaign_id, shard, summary["moves"])
    for leg in legs:
        errors = leg.result.errors
        if errors and errors[0].startswith(STOPPED) and not leg.moves:
            raise AirflowFailException(f"shard {leg.shard} ({leg.conn_id}): {errors[0]}")
    unsent = [leg for leg in legs if not leg.result.complete]
    if unsent:
        raise AirflowException("; ".join(
            f"shard {leg.shard} ({leg.conn_id}): {leg.result.unsent_chunks} request(s) not "
            f"sent yet (nothing was sent twice; a retry sends only those): "
            f"{'; '.join(leg.result.errors[:3])}" for leg in unsent))
    out: dict[str, Any] = {"shard": shard, **counts}
    if summary["moves"]:
        out["moved"] = sum(move["recipients"] for move in summary["moves"])
    return out


def _write_moves(root: DataRoot, campaign_id: str, shard: int, moves: list[dict[str, Any]]
                 ) -> None:
    """The shard's moves as Parquet beside the submissions (the ledger holds them too)."""
    import pyarrow as pa

    from sms_provider.data.schemas import MOVES_SCHEMA

    table = pa.table({name: [move[name] if name != "chunks" else
                             ",".join(map(str, move[name])) for move in moves]
                      for name in MOVES_SCHEMA.names}, schema=MOVES_SCHEMA)
    root.write_table(table, *root.campaign(campaign_id, "moves", f"part-{shard:05d}.parquet"))
