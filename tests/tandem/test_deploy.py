"""docker-compose.yml, read by docker-compose itself (`config` validates and resolves it; no
Docker engine runs here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tandem.celery import app

ROOT = Path(__file__).resolve().parents[2]


def compose_config(**environ: str) -> subprocess.CompletedProcess:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose not found: install Debian's docker-compose (scripts/test.sh)")
    return subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        env={"PATH": os.environ["PATH"], **environ},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_is_valid_and_complete():
    result = compose_config(SECRET_KEY="s" * 50, POSTGRES_PASSWORD="pw")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) == {
        "postgres",
        "redis",
        "init",
        "web",
        "worker",
        "generate-worker",
        "train-worker",
        "beat",
    }
    # Every queue the Celery app declares is consumed by a worker.
    consumed = set()
    for service in services.values():
        command = service.get("command") or []
        if "worker" in command:
            consumed.update(command[command.index("-Q") + 1].split(","))
    assert consumed == {queue.name for queue in app.conf.task_queues}
    devices = services["train-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    web = services["web"]
    assert web["environment"]["DATABASE_URL"] == "postgres://tandem:pw@postgres:5432/tandem"
    assert web["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert "gunicorn" in " ".join(web["command"])
    assert web["depends_on"]["init"]["condition"] == "service_completed_successfully"
    # Redis persists its queue (append-only file on a volume) and beat runs the reconciler.
    redis = services["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    # docker-compose v1 writes a volume as "name:/path:rw", v2 as a mapping.
    targets = [v["target"] if isinstance(v, dict) else v.split(":")[1] for v in redis["volumes"]]
    assert "/data" in targets
    assert "beat" in services["beat"]["command"]


def test_compose_refuses_to_start_without_secrets():
    result = compose_config(POSTGRES_PASSWORD="pw")
    assert result.returncode != 0
    assert "set SECRET_KEY" in result.stderr
