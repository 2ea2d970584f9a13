"""Shared fixtures: a real simulator process per test session, reset for each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.simulator_harness import PushSink, SimulatorProcess


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
