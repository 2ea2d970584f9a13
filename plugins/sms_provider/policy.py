"""Cluster policy: each send task instance runs in the pool of its own shard's connection.

Why a policy and not ``pool=`` in the DAG builder: the connection is a run
parameter (``sms_campaign`` is triggered with ``conn_id`` in its conf) and
Airflow does not template ``pool``, so at parse time the DAG cannot know it. The
``task_instance_mutation_hook`` runs scheduler-side with the run at hand, each
time a send task instance is made (mapped shards included) or refreshed for a
retry. A routed campaign (``conn_ids``) gives each shard its own connection: the
send task is mapped over the upstream's return value, one
``{"shard", "sms_conn_id"}`` per map index, which the scheduler has in its XCom
table when it expands the task. So the hook reads the shard's own connection
from there (element ``map_index`` of the upstream's return value) and falls back
to the run's conf ``conn_id``, else the DAG's default, where that is not known.

A shard that fails over keeps its pool slot while its moved recipients go out
through the next connection (a move is decided inside the running task): the
pool bounds the send tasks that start on a connection, not those that end on it.

It is registered through the ``airflow.policy`` entry point of this package, so
installing the provider is enough. A pool that does not exist is not used (the
task would never be scheduled): create the pools with
``python -m sms_provider.pools`` (:mod:`sms_provider.pools`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.policies import hookimpl

from sms_provider.pools import pool_name

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance

log = logging.getLogger(__name__)

#: operators whose task instances use the run's vendor connection for sending
SENDING_TASK_TYPES = frozenset({"SendShardOperator"})
CONN_PARAM = "conn_id"
_missing_logged: set[str] = set()


def _default_conn_id(task: Any) -> str | None:
    params = getattr(getattr(task, "dag", None), "params", None) or {}
    try:
        param = params.get_param(CONN_PARAM) if hasattr(params, "get_param") else None
    except KeyError:
        param = None
    value = getattr(param, "value", None) if param is not None else params.get(CONN_PARAM)
    return value if isinstance(value, str) and value else None


def run_conn_id(dag_run: DagRun, task: Any) -> str | None:
    """The vendor connection of a run: its conf's ``conn_id``, else the DAG's default."""
    conf = getattr(dag_run, "conf", None) or {}
    value = conf.get(CONN_PARAM) if isinstance(conf, dict) else None
    if isinstance(value, str) and value.strip():
        return value.strip()
    return _default_conn_id(task)


def _pool_exists(name: str, dag_run: DagRun) -> bool:
    """Looked up in the scheduler's own session: the hook must open none of its own."""
    from airflow.models.pool import Pool
    from sqlalchemy import select
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is None:
        return False
    return session.scalar(select(Pool.pool).where(Pool.pool == name)) is not None


def shard_conn_id(task_instance: TaskInstance, task: Any, dag_run: DagRun) -> str | None:
    """The connection of a mapped send task's own shard: ``sms_conn_id`` of element
    ``map_index`` of an upstream's return value (``prepare``, ``select``)."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select
    from sqlalchemy.orm import object_session

    index = getattr(task_instance, "map_index", -1)
    upstream = sorted(getattr(task, "upstream_task_ids", None) or ())
    session = object_session(dag_run)
    if index is None or index < 0 or not upstream or session is None:
        return None
    rows = session.scalars(select(XComModel).where(
        XComModel.dag_id == task_instance.dag_id, XComModel.run_id == task_instance.run_id,
        XComModel.task_id.in_(upstream), XComModel.key == "return_value",
        XComModel.map_index == -1))
    for row in rows:
        value = XComModel.deserialize_value(row)
        if isinstance(value, list) and index < len(value) and isinstance(value[index], dict):
            conn_id = value[index].get("sms_conn_id")
            if isinstance(conn_id, str) and conn_id.strip():
                return conn_id.strip()
    return None


@hookimpl
def task_instance_mutation_hook(task_instance: TaskInstance, dag_run: DagRun | None) -> None:
    """Route a send task instance to its shard's connection's pool, when that pool exists."""
    task = getattr(task_instance, "task", None)
    if dag_run is None or task is None or task.task_type not in SENDING_TASK_TYPES:
        return
    conn_id = shard_conn_id(task_instance, task, dag_run) or run_conn_id(dag_run, task)
    if not conn_id:
        return
    name = pool_name(conn_id)
    if not _pool_exists(name, dag_run):
        if name not in _missing_logged:
            _missing_logged.add(name)
            log.warning("pool %s does not exist, so the send tasks of connection %s share "
                        "the default pool; create it with: python -m sms_provider.pools",
                        name, conn_id)
        return
    task_instance.pool = name
