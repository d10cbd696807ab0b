"""Service faults under an annotator at work: Redis killed, the generate worker SIGKILLed,
PostgreSQL restarted and stopped. Prints one JSON object per scenario.

Everything runs on services of its own, started here and removed at the end: a PostgreSQL
cluster (initdb in a temporary folder, on a free port), a Redis server (no persistence, so a
kill loses its memory as a crash would), gunicorn, a `default`+`generate` worker (solo pool:
the task runs in the worker's own process, so killing one kills the other) and beat. The
machine's own PostgreSQL and Redis are never touched. The lease timings are shortened
(GENERATION_STALE_SECONDS=4, RECONCILE_SECONDS=1) so recovery is measured in seconds.

Faults strike at chosen points, never after a sleep: between two requests of the client, or
while the worker is paused at a named point (rlhf.train.faults: `generate:streaming` at the
first sampled token, `generate:retry` when a task is about to retry a database error).

The client is an annotator's: it logs in, writes prompts through the JSON API with an
Idempotency-Key, labels the comparisons once ready, and retries a 503 or a dropped connection
with the same key, as the page does. Each scenario reports:

- `requests`: the client's responses by status ("connection-error" for none at all);
- `outage_responses_ok`: every 503 was JSON with Retry-After on the API, a page elsewhere;
- `recovered_s`: from the service's return until every comparison written was ready;
- `stuck`: comparisons neither ready nor failed once the bound (`--bound`, s) has passed;
- `labels_confirmed` / `labels_stored`: labels the client was told are stored (201, or a 409
  naming its label) and labels in the database; `dialogues_written` / `dialogues_stored`.

    python benchmarks/faults.py                          # all four scenarios
    python benchmarks/faults.py --scenario worker_killed
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "faults-annotator-password"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(what: str, ready: Callable[[], bool], timeout: float) -> float:
    """Poll `ready` until it holds; the seconds it took. Fails after `timeout`."""
    started = time.monotonic()
    while not ready():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - started


# --- services of our own ------------------------------------------------------------------------


class Postgres:
    """A throwaway PostgreSQL cluster. initdb and the server refuse to run as root, so as root
    they run as the `postgres` system user, on a folder it owns."""

    def __init__(self, root: Path) -> None:
        self.data, self.sockets = root / "pgdata", root / "pgsockets"
        self.port = free_port()
        self.log = root / "postgres.log"
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/tandem"

    def _run(self, *command: str) -> None:
        subprocess.run([*self.as_owner, *command], check=True, capture_output=True, timeout=120)

    def create(self) -> None:
        for folder in (self.data, self.sockets):
            folder.mkdir(parents=True)
            if self.as_owner:
                shutil.chown(folder, "postgres", "postgres")
        self.log.touch()
        if self.as_owner:
            shutil.chown(self.log, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "tandem")

    def _pg_ctl(self, *action: str) -> None:
        # The server's output goes to its log (-l): holding our pipe, it would keep the call
        # from returning. fsync off: the cluster is thrown away, and stops are clean ones.
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", *action)

    def start(self) -> None:
        self._pg_ctl("start")

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")

    def restart(self) -> None:
        self._pg_ctl("-m", "fast", "restart")

    def query(self, sql: str, *params: Any) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as connection:
            return connection.execute(sql, params).fetchall()


class Redis:
    def __init__(self, root: Path) -> None:
        self.port, self.log = free_port(), root / "redis.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]  # a kill loses everything, as a crash
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=out)
        wait_until("redis", self._answers, 30)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()


class Process:
    """A Tandem process (gunicorn, a worker, beat) in a session of its own, so a kill reaches
    it and its children and nothing else."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], root: Path) -> None:
        self.name, self.log = name, root / f"{name}.log"
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                command, env=env, cwd=REPO, stdout=out, stderr=out, start_new_session=True
            )

    def signal(self, number: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, number)

    def stop(self) -> None:
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


SEED = """
import django
django.setup()
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from annotation.models import Batch
from annotation.permissions import ANNOTATOR
from modelcore.tiny import save_tiny_model
from rlhf.models import ModelVersion
from rlhf.services import register_checkpoint

call_command("migrate", verbosity=0, interactive=False)
directory = save_tiny_model(settings.ARTIFACTS_ROOT / "models" / "tiny")
version = register_checkpoint(
    ModelVersion.objects.create(
        name="tiny", artifact_path=str(directory.relative_to(settings.ARTIFACTS_ROOT))
    ),
    publish=True,
)
Batch.objects.create(name="faults", model_a=version, model_b=version, max_new_tokens=16)
user = get_user_model().objects.create_user(username="annotator", password=PASSWORD)
user.groups.add(Group.objects.get(name=ANNOTATOR))
"""


class Stack:
    """PostgreSQL, Redis and Tandem's processes, on a temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.postgres, self.redis = Postgres(root), Redis(root)
        self.web_port = free_port()
        self.pauses = root / "pauses"
        self.pauses.mkdir()
        self.worker: Process | None = None
        self.others: list[Process] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tandem.settings",
            "DATABASE_URL": self.postgres.url,
            "REDIS_URL": self.redis.url,
            "TANDEM_HOME": str(self.root / "home"),
            "ARTIFACTS_ROOT": str(self.root / "artifacts"),
            "SECRET_KEY": "faults-benchmark-secret-key-long-enough-for-django-checks",
            "DEBUG": "0",
            "HTTPS": "0",
            "ALLOWED_HOSTS": "127.0.0.1",
            "GENERATION_HEARTBEAT_SECONDS": "1",
            "GENERATION_STALE_SECONDS": "4",
            "GENERATION_MAX_ATTEMPTS": "5",
            "RECONCILE_SECONDS": "1",
            "TANDEM_TEST_PAUSE_DIR": str(self.pauses),
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            **extra,
        }

    def start(self) -> None:
        log(f"services in {self.root}")
        self.postgres.create()
        self.redis.start()
        seed = SEED.replace("PASSWORD", repr(PASSWORD))
        subprocess.run([sys.executable, "-c", seed], env=self.env(), cwd=REPO, check=True)
        web = [sys.executable, "-m", "gunicorn", "tandem.wsgi:application"]
        web += ["--bind", f"127.0.0.1:{self.web_port}", "--workers", "1"]
        web += ["--worker-class", "gthread", "--threads", "4"]
        self.others.append(Process("web", web, self.env(), self.root))
        beat = [sys.executable, "-m", "celery", "-A", "tandem", "beat", "--loglevel", "INFO"]
        beat += ["--schedule", str(self.root / "beat-schedule")]
        self.others.append(Process("beat", beat, self.env(), self.root))
        self.start_worker()
        wait_until("web", self._web_answers, 120)

    def _web_answers(self) -> bool:
        try:
            return requests.get(f"{self.base}/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start_worker(self, *pause_at: str) -> None:
        """A fresh generate worker, pausing at `pause_at` points (each until released)."""
        for marker in self.pauses.iterdir():
            marker.unlink()
        command = [sys.executable, "-m", "celery", "-A", "tandem", "worker", "--pool", "solo"]
        command += ["-Q", "default,generate", "-n", f"faults-{uuid.uuid4().hex[:6]}@%h"]
        command += ["--loglevel", "INFO"]
        env = self.env(TANDEM_TEST_PAUSE_AT=",".join(pause_at))
        self.worker = Process("worker", command, env, self.root)
        wait_until("worker", lambda: b" ready." in self.worker.log.read_bytes(), 120)

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def reached(self, point: str, timeout: float = 120) -> None:
        marker = self.pauses / f"{point.replace(':', '-')}.reached"
        wait_until(f"the worker at {point}", marker.exists, timeout)

    def release(self, point: str) -> None:
        (self.pauses / f"{point.replace(':', '-')}.release").touch()

    def close(self) -> None:
        for process in [*self.others, self.worker]:
            if process is not None:
                process.stop()
        with contextlib.suppress(Exception):
            self.redis.kill()
        with contextlib.suppress(Exception):
            self.postgres.stop()


# --- the annotator ------------------------------------------------------------------------------


@dataclass
class Report:
    scenario: str
    requests: Counter = field(default_factory=Counter)
    outage_responses_ok: bool = True
    recovered_s: float | None = None
    stuck: int = 0
    labels_confirmed: int = 0
    labels_stored: int = 0
    dialogues_written: int = 0
    dialogues_stored: int = 0
    comparisons: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        result = {key: value for key, value in vars(self).items() if key != "comparisons"}
        result["requests"] = dict(sorted(self.requests.items()))
        return result


class Annotator:
    """One logged-in annotator, as the page sends its requests."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.report = Report("log-in")

    def log_in(self) -> None:
        page = self.session.get(f"{self.base}/accounts/login/", timeout=30)
        page.raise_for_status()
        answer = self.session.post(
            f"{self.base}/accounts/login/",
            data={
                "username": "annotator",
                "password": PASSWORD,
                "csrfmiddlewaretoken": self.session.cookies["csrftoken"],
            },
            headers={"Referer": f"{self.base}/accounts/login/"},
            timeout=30,
            allow_redirects=False,
        )
        assert answer.status_code == 302, f"log-in failed: {answer.status_code}"

    def once(self, method: str, path: str, body: dict | None = None, key: str = ""):
        """One request; its status is counted (None: the connection failed)."""
        headers = {"X-CSRFToken": self.session.cookies.get("csrftoken", ""), "Referer": self.base}
        if key:
            headers["Idempotency-Key"] = key
        try:
            response = self.session.request(
                method, f"{self.base}{path}", json=body, headers=headers, timeout=30
            )
        except requests.ConnectionError:
            self.report.requests["connection-error"] += 1
            return None
        self.report.requests[str(response.status_code)] += 1
        if response.status_code == 503:
            self._check_unavailable(path, response)
        return response

    def _check_unavailable(self, path: str, response: requests.Response) -> None:
        api = path.startswith(("/api/", "/annotate/api/"))
        kind = response.headers.get("Content-Type", "")
        ok = "Retry-After" in response.headers and (
            ("application/json" in kind and "detail" in response.json())
            if api
            else ("text/html" in kind and "try again" in response.text)
        )
        if not ok:
            self.report.outage_responses_ok = False
            self.report.notes.append(f"bad 503 for {path}: {kind} {response.text[:200]}")

    def send(self, method: str, path: str, body: dict | None = None, key: str = "", timeout=60):
        """A request retried as the page retries it: on a 503 or a dropped connection, again
        with the same Idempotency-Key."""
        started = time.monotonic()
        while True:
            response = self.once(method, path, body, key)
            if response is not None and response.status_code != 503:
                return response
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{method} {path}: no answer but 503 for {timeout} s")
            time.sleep(0.2)

    def write_prompt(self, text: str, key: str | None = None) -> int:
        key = key or uuid.uuid4().hex
        body = {"prompt": text, "guideline": "helpfulness"}
        response = self.send("POST", "/annotate/api/dialogues/", body, key)
        assert response.status_code in (200, 201), (response.status_code, response.text)
        comparison = response.json()["id"]
        if comparison not in self.report.comparisons:
            self.report.comparisons.append(comparison)
            self.report.dialogues_written += 1
        return comparison

    def label(self, comparison: int, *, retry: bool = True) -> requests.Response | None:
        body = {
            "chosen": "left",
            "strength": "better",
            "safety": "both_safe",
            "time_spent_ms": 4000,
        }
        path = f"/annotate/api/comparisons/{comparison}/label/"
        response = self.send("POST", path, body) if retry else self.once("POST", path, body)
        if response is not None and (
            response.status_code == 201
            or (response.status_code == 409 and "label" in response.json())
        ):
            self.report.labels_confirmed += 1
        return response


# --- scenarios ----------------------------------------------------------------------------------


def settle(stack: Stack, annotator: Annotator, back: float, bound: float) -> None:
    """Wait for every comparison of the scenario to be ready (from `back`, when the services
    returned), label them all, and count what the database holds."""
    report, ids = annotator.report, annotator.report.comparisons

    def done() -> bool:
        rows = stack.postgres.query(
            "SELECT count(*) FROM annotation_comparison"
            " WHERE id = ANY(%s) AND status IN ('ready', 'failed')",
            ids,
        )
        return rows[0][0] == len(ids)

    with contextlib.suppress(TimeoutError):
        wait_until("every comparison ready", done, bound)
    report.recovered_s = round(time.monotonic() - back, 2)
    report.stuck = stack.postgres.query(
        "SELECT count(*) FROM annotation_comparison"
        " WHERE id = ANY(%s) AND status NOT IN ('ready', 'failed')",
        ids,
    )[0][0]
    failed = stack.postgres.query(
        "SELECT id, error FROM annotation_comparison WHERE id = ANY(%s) AND status = 'failed'",
        ids,
    )
    report.notes += [f"comparison {pk} failed: {error}" for pk, error in failed]
    labelled = {
        row[0]
        for row in stack.postgres.query(
            "SELECT comparison_id FROM annotation_label WHERE comparison_id = ANY(%s)", ids
        )
    }
    ready = [
        row[0]
        for row in stack.postgres.query(
            "SELECT id FROM annotation_comparison WHERE id = ANY(%s) AND status = 'ready'", ids
        )
    ]
    for comparison in ready:
        if comparison not in labelled:
            annotator.label(comparison)
    report.labels_stored = stack.postgres.query(
        "SELECT count(*) FROM annotation_label WHERE comparison_id = ANY(%s)", ids
    )[0][0]
    report.dialogues_stored = stack.postgres.query(
        "SELECT count(DISTINCT t.dialogue_id) FROM annotation_turn t"
        " JOIN annotation_comparison c ON c.turn_id = t.id WHERE c.id = ANY(%s)",
        ids,
    )[0][0]


def redis_killed(stack: Stack, annotator: Annotator, bound: float) -> None:
    """Redis dies (its queue with it) between prompt writes and comes back empty."""
    for n in range(3):
        annotator.write_prompt(f"Before the fault, prompt {n}: name a colour.")
    stack.redis.kill()
    for n in range(3):
        annotator.write_prompt(f"While Redis is down, prompt {n}: name a fruit.")
    # A client that lost the answer to a write sends it again: the same dialogue comes back.
    key = uuid.uuid4().hex
    first = annotator.write_prompt("Sent twice: name a tree.", key)
    again = annotator.write_prompt("Sent twice: name a tree.", key)
    assert first == again, "a retried write made a second dialogue"
    stack.redis.start()
    settle(stack, annotator, time.monotonic(), bound)


def worker_killed(stack: Stack, annotator: Annotator, bound: float) -> None:
    """The generate worker is SIGKILLed at its first sampled token, then started again."""
    stack.stop_worker()
    stack.start_worker("generate:streaming")
    annotator.write_prompt("While the worker dies: name a bird.")
    stack.reached("generate:streaming")
    stack.worker.kill()
    back = time.monotonic()
    stack.start_worker()
    settle(stack, annotator, back, bound)


def postgres_restarted(stack: Stack, annotator: Annotator, bound: float) -> None:
    """PostgreSQL restarts while the annotator labels and the worker samples."""
    ready = [
        annotator.write_prompt(f"To label across a restart, {n}: name a city.") for n in range(4)
    ]
    settle_ready(stack, ready, bound)
    stack.stop_worker()
    stack.start_worker("generate:streaming")
    annotator.write_prompt("Sampled across a restart: name a river.")
    stack.reached("generate:streaming")
    for comparison in ready[:2]:
        annotator.label(comparison)
    stack.postgres.restart()
    back = time.monotonic()
    for comparison in ready[2:]:
        annotator.label(comparison)
    stack.release("generate:streaming")
    settle(stack, annotator, back, bound)


def postgres_stopped(stack: Stack, annotator: Annotator, bound: float) -> None:
    """PostgreSQL is stopped while the annotator works and the worker samples: every request
    is a 503 until it is back, then everything goes through."""
    ready = [
        annotator.write_prompt(f"To label across an outage, {n}: name a planet.") for n in range(2)
    ]
    settle_ready(stack, ready, bound)
    stack.stop_worker()
    stack.start_worker("generate:streaming", "generate:retry")
    annotator.write_prompt("Sampled across an outage: name a mountain.")
    stack.reached("generate:streaming")
    stack.postgres.stop()
    key = uuid.uuid4().hex
    body = {"prompt": "Written during the outage: name a sea.", "guideline": "helpfulness"}
    refused = [
        annotator.once("POST", "/annotate/api/dialogues/", body, key),
        annotator.label(ready[0], retry=False),
        annotator.once("GET", "/annotate/api/progress/"),
        annotator.once("GET", f"/annotate/api/comparisons/{ready[1]}/"),
        annotator.once("GET", "/annotate/"),
        annotator.once("GET", f"/annotate/comparisons/{ready[1]}/"),
    ]
    if any(response is None or response.status_code != 503 for response in refused):
        annotator.report.notes.append("a request during the outage was not a 503")
    stack.release("generate:streaming")  # its next write fails: the task retries
    stack.reached("generate:retry")
    stack.postgres.start()
    back = time.monotonic()
    stack.release("generate:retry")
    annotator.write_prompt(body["prompt"], key)  # the page sends it again
    for comparison in ready:
        annotator.label(comparison)
    settle(stack, annotator, back, bound)


def settle_ready(stack: Stack, ids: list[int], bound: float) -> None:
    wait_until(
        "comparisons ready",
        lambda: (
            stack.postgres.query(
                "SELECT count(*) FROM annotation_comparison WHERE id = ANY(%s) AND status = 'ready'",
                ids,
            )[0][0]
            == len(ids)
        ),
        bound,
    )


SCENARIOS = {
    "redis_killed": redis_killed,
    "worker_killed": worker_killed,
    "postgres_restarted": postgres_restarted,
    "postgres_stopped": postgres_stopped,
}


@contextlib.contextmanager
def stack_running(keep: bool = False) -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="tandem-faults-"))
    root.chmod(0o755)  # the postgres user reaches its folders inside
    stack = Stack(root)
    try:
        stack.start()
        yield stack
    except Exception:
        for process in [*stack.others, stack.worker]:
            if process is not None:
                log(f"--- {process.name} ---\n{process.tail()}")
        raise
    finally:
        stack.close()
        if keep:
            log(f"logs and data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=tuple(SCENARIOS))
    parser.add_argument(
        "--bound", type=float, default=60, help="seconds within which every comparison is ready"
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs and data folder")
    args = parser.parse_args()
    with stack_running(args.keep) as stack:
        annotator = Annotator(stack.base)
        annotator.log_in()
        for name in args.scenario or SCENARIOS:
            log(f"scenario {name}")
            annotator.report = Report(name)
            SCENARIOS[name](stack, annotator, args.bound)
            print(json.dumps(annotator.report.json()), flush=True)


if __name__ == "__main__":
    main()
