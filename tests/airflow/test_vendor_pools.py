"""Vendor pools for real: ``python -m sms_provider.pools`` against the metadata DB,
and the cluster policy routing a real ``dag.test()`` run's send shards to the pool of
each shard's own connection (the run's, or in a routed campaign the one prepare
routed the shard to)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from sms_provider import policy
from sms_provider.pools import ensure_pools, pool_name, vendor_connections
from tests.airflow_harness import CONN_IDS, ROOT, load_dag

SAMPLE = ROOT / "include" / "recipients" / "sample.csv"


@pytest.fixture
def clean_pools(airflow_db: None) -> Iterator[None]:
    from airflow.models.pool import Pool

    def drop() -> None:
        for pool in Pool.get_pools():
            if pool.pool.startswith("sms_vendor_"):
                Pool.delete_pool(pool.pool)
    drop()
    yield
    drop()


@pytest.fixture
def policy_registered() -> Iterator[None]:
    """The policy as the ``airflow.policy`` entry point registers it in a scheduler.

    ``is_noop`` stays as Airflow leaves it for entry-point policies (only an
    ``airflow_local_settings`` clears it), so this is the path a deployment takes:
    mapped shards get the hook as they are expanded.
    """
    from airflow import settings

    manager = settings.get_policy_plugin_manager()
    # With the package installed, the entry point registered the module already, but
    # this test file imported it first: Airflow's start-up, triggered by that import,
    # registered the module half-imported, without its hook. A scheduler imports
    # Airflow first, so it registers the whole module.
    if manager.is_registered(policy):
        manager.unregister(policy)
    manager.register(policy)
    assert manager.hook.task_instance_mutation_hook.get_hookimpls()
    yield
    manager.unregister(policy)


def pools() -> dict[str, int]:
    from airflow.models.pool import Pool

    return {p.pool: p.slots for p in Pool.get_pools() if p.pool.startswith("sms_vendor_")}


def test_the_cli_makes_one_pool_per_vendor_connection(campaign_env, clean_pools,
                                                      monkeypatch) -> None:
    import json
    import os

    eums = json.loads(os.environ["AIRFLOW_CONN_SMS_EUMS"])
    eums["extra"] = {"send_concurrency": 6}
    monkeypatch.setenv("AIRFLOW_CONN_SMS_EUMS", json.dumps(eums))
    monkeypatch.setenv("AIRFLOW_CONN_NOT_SMS", "http://example.com")
    done = subprocess.run([sys.executable, "-m", "sms_provider.pools"], capture_output=True,
                          text=True, timeout=300, check=True, env=dict(os.environ))
    expected = {pool_name(c): 4 for c in CONN_IDS.values()} | {pool_name("sms_eums"): 6}
    assert pools() == expected
    assert "created pool sms_vendor_sms_eums (6 slots)" in done.stdout
    # run again: existing pools keep the slots someone tuned
    from airflow.models.pool import Pool

    Pool.create_or_update_pool(pool_name("sms_eims"), 9, "tuned", include_deferred=False)
    again = ensure_pools(vendor_connections())
    assert (pool_name("sms_eims"), 9, "kept") in again
    assert pools()[pool_name("sms_eims")] == 9
    ensure_pools(vendor_connections(["sms_eims"]), slots=2, update=True)
    assert pools()[pool_name("sms_eims")] == 2


def send_pools(dr) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": ti.pool for ti in dr.get_task_instances()}


def test_send_shards_run_in_the_pool_of_the_runs_connection(
        campaign_env, sim, clean_pools, policy_registered) -> None:
    ensure_pools(vendor_connections(["sms_eims", "sms_eums"]))
    dag = load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign")
    dr = dag.test(run_conf={"campaign_id": "pooled", "recipients": str(SAMPLE),
                            "content": "【Shop】Hi {name}", "conn_id": "sms_eims"})
    assert dr.state == "success"
    used = send_pools(dr)
    sends = {k: v for k, v in used.items() if k.startswith("send[")}
    assert sends and set(sends.values()) == {"sms_vendor_sms_eims"}
    assert {v for k, v in used.items() if not k.startswith("send[")} == {"default_pool"}


def test_without_conn_id_in_the_conf_the_dags_default_connection_is_used(
        campaign_env, sim, clean_pools, policy_registered) -> None:
    ensure_pools(vendor_connections(["sms_eums"]))
    dag = load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign")  # default sms_eums
    dr = dag.test(run_conf={"campaign_id": "pooled-default", "recipients": str(SAMPLE),
                            "content": "【Shop】Hi {name}"})
    assert dr.state == "success"
    sends = {v for k, v in send_pools(dr).items() if k.startswith("send[")}
    assert sends == {"sms_vendor_sms_eums"}


def test_a_missing_pool_leaves_the_default_so_the_send_still_runs(
        campaign_env, sim, clean_pools, policy_registered) -> None:
    dag = load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign")
    dr = dag.test(run_conf={"campaign_id": "unpooled", "recipients": str(SAMPLE),
                            "content": "【Shop】Hi {name}", "conn_id": "sms_chuanglan"})
    assert dr.state == "success"
    assert {v for k, v in send_pools(dr).items() if k.startswith("send[")} == {"default_pool"}


def test_the_policy_is_registered_through_the_airflow_policy_entry_point() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["airflow.policy"] == {"sms_provider": "sms_provider.policy"}
    assert callable(policy.task_instance_mutation_hook)


def test_each_shard_of_a_routed_campaign_runs_in_its_own_connections_pool(
        campaign_env, sim, clean_pools, policy_registered, tmp_path) -> None:
    from tests.airflow.test_routing_dag import with_foreign

    ensure_pools(vendor_connections(["sms_eums", "sms_emay_ims"]))
    dag = load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign")
    dr = dag.test(run_conf={"campaign_id": "pooled-routed",
                            "recipients": str(with_foreign(tmp_path)),
                            "content": "【Shop】Hi {name}", "conn_id": "sms_eums",
                            "conn_ids": ["sms_eums", "sms_emay_ims"]})
    assert dr.state == "success"
    shards = {ti.map_index: ti for ti in dr.get_task_instances() if ti.task_id == "send"}
    by_pool = {index: ti.pool for index, ti in shards.items()}
    routed = dr.get_task_instance("prepare").xcom_pull(task_ids="prepare")
    assert len(routed) == len(shards) >= 2
    assert by_pool == {i: pool_name(entry["sms_conn_id"]) for i, entry in enumerate(routed)}
    assert set(by_pool.values()) == {"sms_vendor_sms_eums", "sms_vendor_sms_emay_ims"}


def test_the_resends_send_tasks_run_in_the_pool_of_the_resend_connection(
        campaign_env, sim, clean_pools, policy_registered, monkeypatch) -> None:
    """The resend's conf names the connection; its shards are mapped like a campaign's."""
    from tests.airflow.test_failover_dag import reconcile

    ensure_pools(vendor_connections(["sms_eums", "sms_chuanglan"]))
    sim.reset(eums={"simulation": {"outcomes": {"delivered": 0.0, "failed": 1.0,
                                                "silent": 0.0}}})
    dag = load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign")
    assert dag.test(run_conf={"campaign_id": "pooled-resend", "recipients": str(SAMPLE),
                              "content": "【Shop】Hi {name}"}).state == "success"
    reconcile(campaign_env, "pooled-resend", ["sms_eums"], monkeypatch)
    dag = load_dag(ROOT / "dags" / "sms_resend.py", "sms_resend")
    dr = dag.test(run_conf={"campaign_id": "pooled-resend", "conn_id": "sms_chuanglan"})
    assert dr.state == "success"
    sends = {v for k, v in send_pools(dr).items() if k.startswith("send[")}
    assert sends == {"sms_vendor_sms_chuanglan"}
