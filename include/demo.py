"""``make demo``: the simulator, the five connections, one campaign per vendor,
then a campaign routed over two vendors whose preferred one fails partway
(failover, docs/routing.md), then report collection (pull and push) and
reconciliation, then a resend of the routed campaign's failures through EIMS
(``sms_resend``) and its reconciliation across both attempts.

Starts the simulator (``include/simulator.json``) and the push receiver (for
Chuanglan, which only pushes), migrates Airflow's metadata DB in ``.airflow/``,
registers the five vendor connections, runs ``sms_campaign`` once per vendor
with ``airflow dags test`` on ``include/recipients/sample.csv`` (46 rows, 6 of
them bad), then ``sms_reports`` and ``sms_reconcile``, and prints per vendor
what was submitted, delivered and failed, and where each ``report.html`` is.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import requests

from sms_provider.data.resend.across import attempt_summary

ROOT = Path(__file__).resolve().parent.parent
CONTENT = "【Shop】Hi {name}, your code is {code}"
LOGINS = {"emay_ims": ("app_id", "secret_key", {"mode": "secure"}),
          "emay_fms": ("app_id", "secret_key", {"mode": "secure"}),
          "eims": ("account", "password", {"price_per_item": "0.05"}),
          # failover_after_s: the routed campaign below moves off EUMS 2 s into its outage
          "eums": ("name", "password", {"ver": 17, "failover_after_s": 2}),
          "chuanglan": ("account", "password", {})}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def airflow(*args: str, env: dict[str, str], quiet: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airflow", *args], env=env, text=True,
                          capture_output=quiet, check=False)


def money(path: Path) -> tuple[str, str]:
    """A campaign's spend and cost per delivered message from its ``overview/``."""
    if not path.exists():
        return "-", "-"
    rows = ds.dataset(path).to_table().to_pylist()
    spend = [r for r in rows if r["spend"] is not None]
    if not spend:
        return "no price", "-"
    total = sum(r["spend"] for r in spend)
    delivered = sum(r["delivered"] for r in spend)
    currency = spend[0]["currency"] or ""
    per = f"{total / delivered:.4f}" if delivered else "-"
    return f"{total:.2f} {currency}", per


ROUTED = ("sms_eums", "sms_chuanglan")
#: EUMS answers 503 to every send after its first ten: it goes down partway
EUMS_DOWN = {"kind": "status", "status": 503, "vendor": "eums", "path": "send.do", "skip": 10}


def routed_campaign(base: str, stamp: str, env: dict[str, str]) -> tuple[str, str, bool]:
    """One campaign over EUMS then Chuanglan; EUMS fails partway and the rest moves."""
    campaign = f"demo-routed-{stamp}"
    conf = {"campaign_id": campaign, "conn_ids": list(ROUTED), "content": CONTENT,
            "recipients": str(ROOT / "include" / "recipients" / "sample.csv")}
    requests.post(base + "/_sim/faults", json={"rules": [EUMS_DOWN]},
                  timeout=10).raise_for_status()
    print(f"running sms_campaign routed over {' then '.join(ROUTED)}, EUMS failing after "
          "its first 10 requests ...", flush=True)
    try:
        run = airflow("dags", "test", "sms_campaign", "-c", json.dumps(conf), env=env)
    finally:
        requests.delete(base + "/_sim/faults", timeout=10).raise_for_status()
    if run.returncode:
        print(run.stdout[-3000:], run.stderr[-3000:])
    subs = Path(env["SMS_DATA_ROOT"]) / "campaigns" / campaign / "submissions"
    if subs.exists():
        split = Counter(ds.dataset(subs).to_table(columns=["conn_id"])["conn_id"].to_pylist())
        print("  submitted through:", ", ".join(f"{c} {n}" for c, n in sorted(split.items())))
    moves = Path(env["SMS_DATA_ROOT"]) / "campaigns" / campaign / "moves"
    if moves.exists():
        for move in ds.dataset(moves).to_table().to_pylist():
            print(f"  moved {move['recipients']} recipient(s) from {move['source_conn']} to "
                  f"{move['target_conn']} (shard {move['target_shard']}): "
                  f"{move['reason'][:100]}")
    return "routed", campaign, run.returncode == 0


RESEND_THROUGH = "sms_eims"


def resend_failures(campaign: str, env: dict[str, str]) -> bool:
    """``sms_resend`` of the routed campaign's failures, then its reports and the
    reconciliation of both attempts; prints what the resend recovered and cost."""
    conf = {"campaign_id": campaign, "conn_id": RESEND_THROUGH, "statuses": ["FAILED"]}
    print(f"running sms_resend: the failures of {campaign} again through "
          f"{RESEND_THROUGH} ...", flush=True)
    ok = True
    for dag_id, dag_conf in (("sms_resend", conf), ("sms_reports", {}),
                             ("sms_reconcile", {"campaign_id": campaign})):
        if dag_id == "sms_reports":
            time.sleep(2)  # the resent messages' reports
        run = airflow("dags", "test", dag_id, "-c", json.dumps(dag_conf), env=env)
        if run.returncode:
            print(run.stdout[-3000:], run.stderr[-3000:])
            ok = False
    data = Path(env["SMS_DATA_ROOT"]) / "campaigns" / campaign
    skipped = data / "attempt-2" / "rejected"
    if skipped.exists():
        why = Counter(ds.dataset(skipped).to_table()["reason"].to_pylist())
        print("  not resent:", ", ".join(f"{n} {r}" for r, n in why.most_common()))
    attempts = data / "attempts"
    if attempts.exists():
        for line in attempt_summary(ds.dataset(attempts).to_table()):
            spend = (f"{line['spend']:.2f} {line['currency'] or ''}"
                     if line["spend"] is not None else "no price")
            print(f"  attempt {line['attempt']} through {line['conn_id']}: "
                  f"{line['recipients']} recipient(s), {line['delivered']} delivered, "
                  f"spend {spend}" + (" (recovered by the resend)" if line["attempt"] > 1
                                      else ""))
    return ok


def main() -> int:
    env = {**os.environ,
           "AIRFLOW_HOME": os.environ.get("AIRFLOW_HOME", str(ROOT / ".airflow")),
           "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "SMS_DATA_ROOT": os.environ.get("SMS_DATA_ROOT", str(ROOT / "data")),
           "SMS_FMS_POLL_INTERVAL": "1"}
    print("migrating the Airflow metadata DB in", env["AIRFLOW_HOME"], flush=True)
    if airflow("db", "migrate", env=env).returncode:
        print(airflow("db", "migrate", env=env).stderr[-3000:])
        return 1

    config = json.loads((ROOT / "include" / "simulator.json").read_text())
    port, receiver_port = free_port(), free_port()
    receiver_url = f"http://127.0.0.1:{receiver_port}"
    config["chuanglan"].update(push_url=f"{receiver_url}/chuanglan/reports",
                               mo_push_url=f"{receiver_url}/chuanglan/mo")
    config_path = Path(env["SMS_DATA_ROOT"]) / "simulator.demo.json"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config))
    receiver_config = config_path.with_name("receiver.demo.json")
    receiver_config.write_text(json.dumps({"connections": [{
        "conn_id": "sms_chuanglan", "vendor": "chuanglan",
        "receiver": config["chuanglan"]["receiver"],
        "password": config["chuanglan"]["receiver_password"]}]}))
    env["SMS_RECEIVER_CONFIG"] = str(receiver_config)
    sim = subprocess.Popen([sys.executable, "-m", "sms_provider.simulator", "--port", str(port),
                            "--config", str(config_path), "--log-level", "WARNING"], env=env)
    receiver = subprocess.Popen([sys.executable, "-m", "sms_provider.receiver", "--port",
                                 str(receiver_port), "--config", str(receiver_config),
                                 "--data-root", env["SMS_DATA_ROOT"], "--compact-every", "0",
                                 "--log-level", "WARNING", "--no-access-log"], env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if requests.get(base + "/_sim/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)
        connections = {}
        for vendor, (login, password, extra) in LOGINS.items():
            if vendor == "eums":
                extra = {**extra, "aes_key": config["eums"]["aes_key"]}
            connections[f"sms_{vendor}"] = {
                "conn_type": vendor, "host": "127.0.0.1", "port": port,
                "login": config[vendor][login], "password": config[vendor][password],
                "extra": json.dumps(extra)}
        conn_file = config_path.with_name("connections.demo.json")
        conn_file.write_text(json.dumps(connections))
        result = airflow("connections", "import", "--overwrite", str(conn_file), env=env)
        conn_file.unlink()
        if result.returncode:
            print(result.stdout, result.stderr)
            return 1
        print(f"simulator on {base}; connections sms_emay_ims, sms_emay_fms, sms_eims, "
              "sms_eums, sms_chuanglan registered", flush=True)
        print("running sms_reports (the balances before sending) ...", flush=True)
        run = airflow("dags", "test", "sms_reports", env=env)
        if run.returncode:
            print(run.stdout[-3000:], run.stderr[-3000:])
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        rows = []
        for vendor in LOGINS:
            campaign = f"demo-{vendor.replace('_', '-')}-{stamp}"
            conf = {"campaign_id": campaign, "conn_id": f"sms_{vendor}", "content": CONTENT,
                    "recipients": str(ROOT / "include" / "recipients" / "sample.csv")}
            print(f"running sms_campaign for {vendor} ...", flush=True)
            run = airflow("dags", "test", "sms_campaign", "-c", json.dumps(conf), env=env)
            ok = run.returncode == 0
            if not ok:
                print(run.stdout[-3000:], run.stderr[-3000:])
            rows.append((vendor, campaign, ok))
        rows.append(routed_campaign(base, stamp, env))
        time.sleep(2)  # the simulator reports within about a second; pushes follow
        for dag_id, conf in (("sms_reports", {}), ("sms_reconcile", {"campaign_id": None})):
            print(f"running {dag_id} ...", flush=True)
            run = airflow("dags", "test", dag_id, "-c", json.dumps(conf), env=env)
            if run.returncode:
                print(run.stdout[-3000:], run.stderr[-3000:])
                rows = [(v, c, False) for v, c, _ in rows]
        routed = rows[-1]
        rows[-1] = (routed[0], routed[1], resend_failures(routed[1], env) and routed[2])
    finally:
        for proc in (sim, receiver):
            proc.terminate()
            proc.wait(10)

    data = Path(env["SMS_DATA_ROOT"]) / "campaigns"
    print()
    print(f"{'vendor':<10} {'input':>5} {'prepared':>8} {'rejected':>8} {'submitted':>9} "
          f"{'delivered':>9} {'failed':>6} {'pending':>7} {'spend':>12} {'per deliv.':>10}"
          "  status")
    reasons: Counter[str] = Counter()
    for vendor, campaign, ok in rows:
        counts = {}
        for name in ("prepared", "rejected", "submissions"):
            path = data / campaign / name
            counts[name] = ds.dataset(path).to_table() if path.exists() else None
        subs = counts["submissions"]
        status = (dict(zip(*[c.to_pylist() for c in pc.value_counts(subs["status"]).flatten()],
                           strict=True)) if subs is not None and subs.num_rows else {})
        prepared = counts["prepared"].num_rows if counts["prepared"] is not None else 0
        rejected = counts["rejected"].num_rows if counts["rejected"] is not None else 0
        if rejected:
            reasons.update(counts["rejected"]["reason"].to_pylist())
        final: dict[str, int] = {}
        recon = data / campaign / "reconciliation"
        if recon.exists():
            column = ds.dataset(recon).to_table(columns=["final_status"])["final_status"]
            final = dict(zip(*[c.to_pylist() for c in pc.value_counts(column).flatten()],
                             strict=True))
        spend, per = money(data / campaign / "overview")
        print(f"{vendor:<10} {prepared + rejected:>5} {prepared:>8} {rejected:>8} "
              f"{status.get('submitted', 0):>9} {final.get('DELIVERED', 0):>9} "
              f"{final.get('FAILED', 0):>6} {final.get('PENDING', 0):>7} {spend:>12} "
              f"{per:>10}  {'ok' if ok else 'FAILED'}")
    if reasons:
        print("rejected, all vendors:", ", ".join(f"{n} {r}" for r, n in reasons.most_common()))
    if reasons.get("suppressed"):
        print("  (suppressed: numbers that replied an opt-out word to an earlier run; "
              "they are on the suppression list under the data root)")
    print()
    print(f"Parquet datasets under {data}/<campaign>/{{prepared,rejected,submissions,"
          "reconciliation}/; the analyst's reports:")
    for _, campaign, _ in rows:
        print(f"  {data / campaign / 'report.html'}")
    print(f"every campaign side by side: {data / 'index.html'}")
    print(f"all campaigns as one dataset (pandas, pyarrow, DuckDB): "
          f"{data.parent / 'reconciliation'}/month=…/vendor=…/")
    print(f"priced with {ROOT / 'include' / 'prices.json'} (SMS_PRICES_FILE to use another)")
    return 0 if all(ok for _, _, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
