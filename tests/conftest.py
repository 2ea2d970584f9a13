"""Shared fixtures: a real simulator process per test session, reset for each test;
a private Airflow home (configured before anything imports airflow)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import airflow_harness
from tests.simulator_harness import DEFAULT_CONFIG, PushSink, SimulatorProcess

airflow_harness.configure()


@pytest.fixture(scope="session")
def simulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    proc = SimulatorProcess(tmp_path_factory.mktemp("simulator")).start()
    yield proc
    proc.stop()


@pytest.fixture
def sim(simulator_process: SimulatorProcess) -> SimulatorProcess:
    """The simulator with fresh state and no faults (default config)."""
    simulator_process.reset()
    return simulator_process


@pytest.fixture
def push_sink() -> Iterator[PushSink]:
    sink = PushSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated metadata DB in this worker's private AIRFLOW_HOME."""
    if not (Path(os.environ["AIRFLOW_HOME"]) / "airflow.db").exists():
        airflow_harness.migrate()


@pytest.fixture
def campaign_env(sim: SimulatorProcess, airflow_db: None, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Path:
    """Connections to the simulator and a fresh data root; returns the data root."""
    for key, value in airflow_harness.connection_env(sim, DEFAULT_CONFIG).items():
        monkeypatch.setenv(key, value)
    root = tmp_path / "data"
    monkeypatch.setenv("SMS_DATA_ROOT", str(root))
    monkeypatch.delenv("SMS_LEDGER_URL", raising=False)
    return root
