"""Airflow for the tests: a private AIRFLOW_HOME, a migrated SQLite DB, and the five
vendor connections pointing at the simulator (JSON env vars, as a user would set them).

``configure`` must run before anything imports airflow; ``conftest`` calls it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sms_provider.vendors.profiles import PROFILES
from tests.simulator_harness import credentials

if TYPE_CHECKING:
    from tests.simulator_harness import SimulatorProcess

ROOT = Path(__file__).resolve().parent.parent
#: every vendor's default connection id, by vendor
CONN_IDS = {vendor: profile.default_conn_id for vendor, profile in PROFILES.items()}


def configure(home: Path | None = None) -> Path:
    home = home or Path(tempfile.mkdtemp(prefix="sms-airflow-"))
    os.environ.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "SMS_FMS_POLL_INTERVAL": "0.2",
    })
    return home


def migrate() -> None:
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
                   capture_output=True, env=os.environ.copy(), timeout=300)


def connection_env(sim: SimulatorProcess, config: dict[str, Any],
                   extras: dict[str, dict[str, Any]] | None = None) -> dict[str, str]:
    """Every vendor's default connection (``sms_<vendor>``) to ``sim``, with the
    accounts in ``config``, as ``AIRFLOW_CONN_*`` JSON variables."""
    env = {}
    for vendor, conn_id in CONN_IDS.items():
        login, password = credentials(vendor, config)
        conn = {"conn_type": vendor, "host": sim.host, "port": sim.port, "login": login,
                "password": password, "extra": (extras or {}).get(vendor, {})}
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    return env


def load_dag(path: Path, dag_id: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"dagfile_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for value in vars(module).values():
        if getattr(value, "dag_id", None) == dag_id:
            return value
    raise LookupError(f"{dag_id} not in {path}")
