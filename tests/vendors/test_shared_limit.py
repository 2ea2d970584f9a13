"""One rate limit per vendor account across processes, held in Redis
(``SMS_RATE_LIMIT_URL``), proven from the simulator's own arrival times.

Each test runs real OS processes sending through real clients to the simulator;
Redis database 12 is flushed for each test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from sms_provider.errors import RateLimitedError, RetryableError
from sms_provider.vendors.base import OutboundMessage
from sms_provider.vendors.shared_limit import ENV_URL, KEY_PREFIX, SharedRateLimiter
from sms_provider.vendors.transport import RateLimiter
from tests.simulator_harness import DEFAULT_CONFIG, ROOT, SimulatorProcess, credentials, free_port

REDIS_URL = "redis://127.0.0.1:6379/12"
RATE = 4  # requests per second for the account

#: one process: build the client as a connection does, say "ready", wait for "go",
#: send `count` one-recipient requests with `threads` in flight, print what happened
SENDER = r"""
import json, sys
from concurrent.futures import ThreadPoolExecutor
from sms_provider.errors import SmsError
from sms_provider.vendors.base import OutboundMessage
from sms_provider.vendors.registry import build_client

conn = json.loads(sys.argv[1])
count, threads, mobile = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
client = build_client(conn.pop("conn_type"), **conn)

def one(i):
    try:
        client.send([OutboundMessage(mobile, "【Shop】notice %d" % i)])
        return "sent"
    except SmsError as exc:
        return type(exc).__name__

print("ready", flush=True)
sys.stdin.readline()
with ThreadPoolExecutor(threads) as pool:
    outcomes = list(pool.map(one, range(count)))
print(json.dumps(outcomes), flush=True)
"""


@pytest.fixture
def shared_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("these tests need Redis on 127.0.0.1:6379 (apt-get install redis-server; "
                    "redis-server --daemonize yes)")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def connection(sim: SimulatorProcess, vendor: str, **extras: Any) -> dict[str, Any]:
    login, password = credentials(vendor)
    return {"conn_type": vendor, "host": sim.host, "port": sim.port, "login": login,
            "password": password, "extras": extras}


def run_senders(conns: list[dict[str, Any]], count: int, threads: int, mobile: str,
                env: dict[str, str]) -> list[list[str]]:
    """Start one process per connection, let them all send at once, return outcomes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins"), **env}
    procs = [subprocess.Popen([sys.executable, "-c", SENDER, json.dumps(conn), str(count),
                               str(threads), mobile],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=env, cwd=ROOT) for conn in conns]
    try:
        for proc in procs:  # all up before any sends
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        return [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def busiest_second(times: list[float]) -> int:
    """The most arrivals in any window [t, t + 1 s)."""
    times = sorted(times)
    return max(sum(1 for u in times[i:] if u < t + 1.0) for i, t in enumerate(times))


def test_two_processes_never_exceed_the_account_limit_in_any_second(
        sim: SimulatorProcess, shared_redis: redis.Redis) -> None:
    conn = connection(sim, "chuanglan", rate_limit=RATE)
    outcomes = run_senders([conn, conn], count=8, threads=3, mobile="13800138000",
                           env={ENV_URL: REDIS_URL})
    assert outcomes == [["sent"] * 8, ["sent"] * 8]
    arrivals = [e["time"] for e in sim.requests("chuanglan")]
    assert len(arrivals) == 16
    assert busiest_second(arrivals) <= RATE


def test_without_the_shared_store_each_process_has_the_limit_to_itself(
        sim: SimulatorProcess, shared_redis: redis.Redis) -> None:
    """What the shared limit fixes: two processes on their own send at twice the rate."""
    conn = connection(sim, "chuanglan", rate_limit=RATE)
    outcomes = run_senders([conn, conn], count=8, threads=3, mobile="13800138000",
                           env={ENV_URL: ""})
    assert outcomes == [["sent"] * 8, ["sent"] * 8]
    assert busiest_second([e["time"] for e in sim.requests("chuanglan")]) > RATE


def test_a_vendor_too_fast_answer_to_one_process_pauses_the_other(
        sim: SimulatorProcess, shared_redis: redis.Redis) -> None:
    sim.faults({"kind": "rate_limit", "vendor": "emay_ims", "count": 1})
    conn = connection(sim, "emay_ims")  # no rate_limit: only the pause is shared
    env = {ENV_URL: REDIS_URL}
    [first] = run_senders([conn], count=1, threads=1, mobile="008613800138000", env=env)
    assert first == ["RateLimitedError"]  # ERROR_OVER_SPEED, 1 s back-off by default
    [second] = run_senders([conn], count=1, threads=1, mobile="008613800138000", env=env)
    assert second == ["sent"]
    refused, sent = sim.requests("emay_ims")
    assert sent["time"] - refused["time"] >= 1.0  # the other process waited out the pause
    assert sim.count("emay_ims") == 1


def test_the_pause_and_schedule_are_keyed_by_vendor_and_login_never_the_password(
        sim: SimulatorProcess, shared_redis: redis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_URL, REDIS_URL)
    sim.faults({"kind": "rate_limit", "vendor": "chuanglan", "count": 1})
    with sim.client("chuanglan", rate_limit=RATE) as client:
        assert isinstance(client.http.limiter, SharedRateLimiter)
        with pytest.raises(RateLimitedError):
            client.send([OutboundMessage("13800138000", "【Shop】notice")])
    keys = sorted(k.decode() for k in shared_redis.keys("*"))
    account = DEFAULT_CONFIG["chuanglan"]["account"]
    assert keys == [f"{KEY_PREFIX}:chuanglan:{account}:next",
                    f"{KEY_PREFIX}:chuanglan:{account}:paused"]
    assert DEFAULT_CONFIG["chuanglan"]["password"] not in "".join(keys)


def test_redis_unreachable_is_a_clear_retryable_error_and_nothing_is_sent(
        sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"redis://:secret-word@127.0.0.1:{free_port()}/0"
    monkeypatch.setenv(ENV_URL, url)
    with sim.client("chuanglan", rate_limit=RATE) as client, \
            pytest.raises(RetryableError) as caught:
        client.send([OutboundMessage("13800138000", "【Shop】notice")])
    assert not isinstance(caught.value, RateLimitedError)
    message = str(caught.value)
    assert "shared rate limit store" in message and "nothing was sent" in message
    assert f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}" in message
    assert "secret-word" not in message
    assert sim.requests() == []


def test_without_the_variable_the_limit_stays_per_process(
        sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_URL, raising=False)
    with sim.client("chuanglan", rate_limit=RATE) as client:
        assert type(client.http.limiter) is RateLimiter


def test_a_url_that_is_not_redis_is_refused_by_name(
        sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_URL, "postgresql://user:pw@db/x")
    with pytest.raises(ValueError, match=ENV_URL) as caught:
        sim.client("chuanglan")
    assert "pw" not in str(caught.value)
