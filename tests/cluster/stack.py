"""The distributed deployment of docker-compose.yaml, on loopback, without Docker.

:class:`ClusterStack` starts what the compose file runs as containers, as processes
of this machine: a fresh PostgreSQL database for Airflow's metadata and another for
the send ledger (both created here and dropped at :meth:`ClusterStack.stop`), two
Redis database numbers of their own (the Celery broker, the shared rate limit), the
api-server, scheduler, dag-processor and triggerer, Celery workers that each report a
host name of their own (:mod:`tests.cluster.hostname`), the vendor simulator and the
push receiver. Users reach it as they reach a real deployment: through the REST API,
with a JWT from ``/auth/token`` (the simple auth manager). Everything it starts, it
stops by PID (each process is the leader of its own process group; a worker's task
processes lead groups of their own, as Airflow's supervisor makes them, so a worker is
stopped with every process descended from it). ``tests/cluster`` and
``bench/cluster_send.py`` use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
import psycopg2
import redis
import requests
from cryptography.fernet import Fernet

from tests.airflow_harness import CONN_IDS, ROOT
from tests.simulator_harness import DEFAULT_CONFIG, SimulatorProcess, credentials, free_port

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS = ("127.0.0.1", 6379)
HOW_TO_GET = (
    "The cluster test needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) "
    "and Redis on 127.0.0.1:6379. On Debian: `apt-get install -y postgresql redis-server`, "
    "then `service postgresql start` and `service redis-server start` (with trust auth "
    "for local TCP connections in pg_hba.conf). ")


class StackError(RuntimeError):
    """The stack could not be started; the message says what is missing."""


def check_services() -> None:
    """Fail (never skip) with how to get PostgreSQL and Redis when either is missing."""
    try:
        psycopg2.connect(dbname="postgres", connect_timeout=5, **PG).close()
    except psycopg2.Error as exc:
        raise StackError(HOW_TO_GET + f"PostgreSQL did not answer: {exc}".strip()) from exc
    try:
        redis.Redis(*REDIS, socket_timeout=5).ping()
    except redis.RedisError as exc:
        raise StackError(HOW_TO_GET + f"Redis did not answer: {exc}") from exc


def _admin(sql: str, params: tuple[Any, ...] | None = None) -> None:
    conn = psycopg2.connect(dbname="postgres", **PG)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
    finally:
        conn.close()


def _free_redis_dbs(count: int) -> list[int]:
    """Empty Redis database numbers (the high ones first: others use the low ones)."""
    free = []
    for number in range(15, 1, -1):
        if redis.Redis(*REDIS, db=number).dbsize() == 0:
            free.append(number)
            if len(free) == count:
                return free
    raise StackError("no two empty Redis databases among 2..15")


class ClusterStack:
    """Airflow with CeleryExecutor on PostgreSQL and Redis, on loopback.

    ``extras`` are the connection extras by vendor (every vendor's default connection
    points at the simulator); ``workers`` the Celery workers' host names.
    """

    def __init__(self, workdir: Path, *, workers: Sequence[str] = ("worker-a", "worker-b"),
                 concurrency: int = 2, extras: Mapping[str, dict[str, Any]] | None = None,
                 env: Mapping[str, str] | None = None,
                 worker_cpus: Mapping[str, set[int]] | None = None) -> None:
        self.workdir = workdir
        self.worker_cpus = dict(worker_cpus or {})
        self.worker_names = list(workers)
        self.concurrency = concurrency
        self.extras = dict(extras or {})
        self.extra_env = dict(env or {})
        tag = f"{os.getpid()}_{secrets.token_hex(3)}"
        self.meta_db, self.ledger_db = f"sms_cluster_meta_{tag}", f"sms_cluster_ledger_{tag}"
        self.api_port = free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.password = secrets.token_urlsafe(16)
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list[Any] = []
        self.redis_dbs: list[int] = []
        self.sim: SimulatorProcess | None = None
        self.http = requests.Session()
        self._token_at = 0.0
        self.data_root = workdir / "data"

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> ClusterStack:
        check_services()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        _admin(f'CREATE DATABASE "{self.meta_db}"')
        self._created_dbs = [self.meta_db]
        _admin(f'CREATE DATABASE "{self.ledger_db}"')
        self._created_dbs.append(self.ledger_db)
        self.redis_dbs = _free_redis_dbs(2)
        self.receiver_port = free_port()
        receiver_url = f"http://127.0.0.1:{self.receiver_port}"
        config = json.loads(json.dumps(DEFAULT_CONFIG))
        config["chuanglan"].update(receiver="cluster-receiver", receiver_password="cluster-pw",
                                   push_url=f"{receiver_url}/chuanglan/reports",
                                   mo_push_url=f"{receiver_url}/chuanglan/mo")
        (self.workdir / "sim").mkdir(exist_ok=True)
        self.sim = SimulatorProcess(self.workdir / "sim", config).start()
        receiver_config = self.workdir / "receiver.json"
        receiver_config.write_text(json.dumps({"connections": [{
            "conn_id": CONN_IDS["chuanglan"], "vendor": "chuanglan",
            "receiver": "cluster-receiver", "password": "cluster-pw"}]}))
        (self.workdir / "campaigns").mkdir(exist_ok=True)
        (self.workdir / "home").mkdir(exist_ok=True)
        passwords = self.workdir / "home" / "passwords.json"
        passwords.write_text(json.dumps({"admin": self.password}))
        self.env = self._environment(receiver_config, passwords)

        self._run(["airflow", "db", "migrate"], "migrate", timeout=600)
        self._spawn("receiver", [sys.executable, "-m", "sms_provider.receiver", "--host",
                                 "127.0.0.1", "--port", str(self.receiver_port),
                                 "--config", str(receiver_config), "--log-level", "WARNING"])
        self._spawn("api-server", ["airflow", "api-server", "--host", "127.0.0.1",
                                   "--port", str(self.api_port), "--workers", "1"])
        for name in ("scheduler", "dag-processor", "triggerer"):
            self._spawn(name, ["airflow", name])
        for name in self.worker_names:
            self.start_worker(name)
        self._wait(lambda: self._get_ok("/api/v2/monitor/health"), 180, "the api-server")
        self._wait(lambda: self._get_ok("/api/v2/dags/sms_campaign"), 180,
                   "the dag-processor to parse sms_campaign")
        for name in self.worker_names:
            self._wait(lambda n=name: "ready." in self.log(f"worker-{n}"), 120,
                       f"Celery worker {name}")
        self._run([sys.executable, "-m", "sms_provider.pools"], "pools", timeout=120)
        self.unpause("sms_campaign")

    def _environment(self, receiver_config: Path, passwords: Path) -> dict[str, str]:
        meta = f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{self.meta_db}"
        broker, limit = self.redis_dbs
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AIRFLOW", "SMS_"))}
        env.update({
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            "AIRFLOW_HOME": str(self.workdir / "home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.cluster.hostname.hostname",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API__BASE_URL": self.api,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS[0]}:{REDIS[1]}/{broker}",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + meta,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.concurrency),
            # a worker killed mid-task: its task is failed (and retried) this soon
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
            # a finished task's slot is free within a second, not five (docs/deploy.md)
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "SMS_DATA_ROOT": str(self.data_root),
            "SMS_LEDGER_URL": (f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/"
                               f"{self.ledger_db}"),
            "SMS_RATE_LIMIT_URL": f"redis://{REDIS[0]}:{REDIS[1]}/{limit}",
            "SMS_CAMPAIGNS_DIR": str(self.workdir / "campaigns"),
            "SMS_RECEIVER_CONFIG": str(receiver_config),
            "SMS_TASK_RETRY_DELAY": "2",
            "SMS_REPORT_CONNECTIONS": ",".join(CONN_IDS.values()),
        })
        for vendor, conn_id in CONN_IDS.items():
            login, password = credentials(vendor, self.sim.config)
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps({
                "conn_type": vendor, "host": self.sim.host, "port": self.sim.port,
                "login": login, "password": password, "extra": self.extras.get(vendor, {})})
        env.update(self.extra_env)
        return env

    def start_worker(self, name: str) -> None:
        """A Celery worker called ``name``, on the cores ``worker_cpus`` gives it (a host of
        its own, on one machine), else on any."""
        env = {**self.env, "SMS_CLUSTER_HOSTNAME": name}
        self._spawn(f"worker-{name}", ["airflow", "celery", "worker", "--celery-hostname",
                                       f"{name}@cluster", "--concurrency",
                                       str(self.concurrency), "--skip-serve-logs",
                                       "--without-gossip", "--without-mingle"], env=env,
                    cpus=self.worker_cpus.get(name))

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker and every process descended from it: the host is gone.

        Not its process group alone: Airflow's task supervisor puts each task process
        in a group of its own, and a task left running would finish the request the
        test means to cut off.
        """
        proc = self.procs.pop(f"worker-{name}")
        descendants = _descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        _kill(descendants, timeout=0)
        proc.wait(30)

    def stop(self) -> None:
        for name, proc in reversed(list(self.procs.items())):
            self._end(name, proc)
        self.procs.clear()
        for handle in self._logs:
            handle.close()
        self._logs.clear()
        if self.sim is not None:
            self.sim.stop()
            self.sim = None
        for db in getattr(self, "_created_dbs", []):
            try:
                _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = %s AND pid <> pg_backend_pid()", (db,))
                _admin(f'DROP DATABASE IF EXISTS "{db}"')
            except psycopg2.Error as exc:  # keep on stopping the rest
                print(f"could not drop database {db}: {exc}", file=sys.stderr)
        self._created_dbs = []
        for number in self.redis_dbs:
            redis.Redis(*REDIS, db=number).flushdb()
        self.redis_dbs = []

    @staticmethod
    def _end(name: str, proc: subprocess.Popen) -> None:
        if proc.poll() is not None:
            return
        descendants = _descendants(proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except ProcessLookupError:
            pass
        _kill(descendants, timeout=10)  # the task processes that outlived their worker

    # --- processes -------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str] | None = None,
               cpus: set[int] | None = None) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.procs[name] = subprocess.Popen(argv, env=dict(env or self.env), stdout=log,
                                            stderr=subprocess.STDOUT, cwd=self.workdir,
                                            start_new_session=True, preexec_fn=pin)

    def _run(self, argv: list[str], name: str, timeout: float) -> None:
        with open(self.workdir / f"{name}.log", "wb") as log:
            code = subprocess.run(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                  cwd=self.workdir, timeout=timeout).returncode
        if code:
            raise StackError(f"{' '.join(argv)} failed:\n{self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _wait(self, ready: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise StackError(f"{name} exited while waiting for {what}:\n"
                                     f"{self.log(name)[-3000:]}")
            if time.monotonic() > deadline:
                raise StackError(f"timed out waiting for {what}")
            time.sleep(0.5)

    # --- the REST API, as a user calls it --------------------------------------
    def _auth(self) -> None:
        if time.monotonic() - self._token_at < 600:
            return
        resp = requests.post(f"{self.api}/auth/token", timeout=30,
                             json={"username": "admin", "password": self.password})
        resp.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"
        self._token_at = time.monotonic()

    def _get_ok(self, path: str) -> bool:
        try:
            self._auth()
            return self.http.get(self.api + path, timeout=10).ok
        except requests.RequestException:
            return False

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        self._auth()
        resp = self.http.request(method, self.api + path, timeout=60, **kwargs)
        if not resp.ok:
            raise StackError(f"{method} {path}: {resp.status_code} {resp.text[:500]}")
        return resp.json()

    def unpause(self, dag_id: str) -> None:
        self.call("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any]) -> str:
        run = self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                        json={"logical_date": None, "conf": dict(conf)})
        return run["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns",
                         params={"order_by": "-start_date", "limit": 50})["dag_runs"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while True:
            state = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return state
            if time.monotonic() > deadline:
                raise StackError(f"{dag_id} {run_id} still {state} after {timeout} s")
            time.sleep(1)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                         params={"limit": 100})["task_instances"]

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every try of every map index of ``task_id``: state and host, oldest first."""
        out = []
        for ti in self.task_instances(dag_id, run_id):
            if ti["task_id"] != task_id:
                continue
            path = (f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/"
                    f"{ti['map_index']}/tries")
            out.extend(self.call("GET", path)["task_instances"])
        return out


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _kill(procs: list[psutil.Process], timeout: float) -> None:
    """SIGKILL those of ``procs`` still alive after ``timeout`` seconds, and reap them."""
    for proc in psutil.wait_procs(procs, timeout=timeout)[1]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(procs, timeout=30)
