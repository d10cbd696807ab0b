"""Label submissions from N concurrent annotators against gunicorn + PostgreSQL on this machine.

Everything is set up here and torn down again (gunicorn stopped, database dropped, temporary
folders removed), also on Ctrl-C or failure:

1. a fresh PostgreSQL database (`--database-name`, dropped and created on the server named by
   `--database-url`), migrated;
2. a temporary TANDEM_HOME/ARTIFACTS_ROOT holding a tiny random model with SmolLM2's real
   tokenizer (import_prompts counts tokens with it), registered as the published policy;
3. an open batch, N annotators (one logged-in session each, created directly through the session
   engine rather than by posting the login form: faster, and independent of the login page), and
   enough queued READY comparisons: imported prompts whose response text is written directly,
   because generation is not what this measures;
4. gunicorn (`--worker-class`, `--workers`, `--threads`) with DATABASE_URL, REDIS_URL, HTTPS=0
   and DEBUG=0, as production runs it behind a TLS proxy.

Then N virtual annotators (threads, one keep-alive connection each, like a browser tab) loop for
`--duration` seconds: fetch the next item (POST queue/next/), think, submit a label (POST
comparisons/<id>/label/). A share of submissions (`--double-share`) is a deliberate double
click: the same label sent twice at once on two connections, which must give exactly one 201 and
one 409 naming the same label.

The think time (`--think`, default 1 s, jittered uniformly between half and one and a half times
it) is far shorter than a real annotator's: reading two responses and choosing takes tens of
seconds to minutes. One second per item makes 50 virtual annotators the request rate of
several hundred real ones, so the latency figures are a stress test, not a forecast.

At the end the database is checked: `lost` counts labels acknowledged with 201 that are not in
the database, `duplicated` the extra labels of any (comparison, annotator) pair, `shared` the
comparisons labelled by more than one annotator (the batch has an overlap of one), `errors` any
unexpected status or exception (kinds in `error_kinds`).

    python benchmarks/annotate_load.py                        # 50 annotators, 30 s
    python benchmarks/annotate_load.py --concurrency 100 --workers 4 --threads 8

The default server is gunicorn's gthread worker, 4 processes x 4 threads on this 2-core machine:
threads cover the waits on PostgreSQL and idle keep-alive connections are held by the poller
rather than a thread, while more processes than cores shorten the queue each request waits in
for its process's GIL. Measured on a quiet machine at 50 annotators (30 s runs; p99 of label
submissions): gthread 4x4 62-212 ms over 7 runs, 2x8 118-277 ms, 3x4 177 ms, 6x2 226 ms, 8x2
164 ms. Under heavy load from other work the order was different (2x8 first), so the figures
move with the machine.

The last line of stdout is one JSON object; progress goes to stderr. Latencies are measured by
the client on the same machine (2 cores here), so client, server and PostgreSQL share the CPUs:
`load_before`, `server_cpu_ms_per_request` and `client_cpu_s` say how busy it was.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from rlhf.train.data import SAFETY_LABELS, STRENGTHS  # noqa: E402  (needs REPO on the path)

CSRF_ALPHABET = string.ascii_letters + string.digits


def log(message: str) -> None:
    """Progress goes to stderr: stdout's last line is the JSON result."""
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=50, help="virtual annotators")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument(
        "--think",
        type=float,
        default=1.0,
        help="mean seconds between fetching an item and labelling it (jitter: 0.5x to 1.5x)",
    )
    parser.add_argument(
        "--double-share",
        type=float,
        default=0.05,
        help="share of submissions sent twice at once, as a double click",
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument(
        "--worker-class", default="gthread", help="gunicorn worker class (gthread, sync)"
    )
    parser.add_argument(
        "--keep-alive",
        type=int,
        default=75,
        help="gunicorn keep-alive seconds (a browser reuses its connection between items)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="admin URL of the PostgreSQL server (the benchmark database is created beside it)",
    )
    parser.add_argument("--database-name", default="tandem_bench")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        help="REDIS_URL of the server (Django cache and Celery broker)",
    )
    parser.add_argument(
        "--items",
        type=int,
        default=0,
        help="queued comparisons (default: enough for the run, with a margin)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.duration <= 0 or args.think < 0:
        parser.error("--concurrency must be >= 1, --duration > 0, --think >= 0")
    if not 0 <= args.double_share <= 1:
        parser.error("--double-share must be between 0 and 1")
    if not args.database_name.replace("_", "").isalnum():
        parser.error("--database-name: letters, digits and underscores only")
    return args


# --- setting up ---------------------------------------------------------------------------------


def database_url(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def admin_sql(admin_url: str, *statements: str) -> None:
    import psycopg

    parts = urlsplit(admin_url)
    with psycopg.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or None,
        dbname=parts.path.lstrip("/") or "postgres",
        autocommit=True,
    ) as connection:
        for statement in statements:
            connection.execute(statement)


@contextlib.contextmanager
def throwaway_database(args: argparse.Namespace, home: Path) -> Iterator[None]:
    """The benchmark's own database, `args.database_name` on the server of `args.database_url`
    (dropped first if a run before left it), dropped again at the end unless `--keep`, and the
    temporary `home` removed; a SIGTERM cleans up as Ctrl-C does."""

    def terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    created = False
    try:
        log(f"database {args.database_name} on {urlsplit(args.database_url).netloc}")
        admin_sql(
            args.database_url,
            f'DROP DATABASE IF EXISTS "{args.database_name}" WITH (FORCE)',
            f'CREATE DATABASE "{args.database_name}"',
        )
        created = True
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if "django" in sys.modules:
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
        if created and not args.keep:
            try:
                admin_sql(
                    args.database_url,
                    f'DROP DATABASE IF EXISTS "{args.database_name}" WITH (FORCE)',
                )
            except Exception as error:
                log(f"could not drop {args.database_name}: {error}")
        elif created:
            log(f"kept database {database_url(args.database_url, args.database_name)}")
        shutil.rmtree(home, ignore_errors=True)


def server_environment(args: argparse.Namespace, home: Path) -> dict[str, str]:
    """The environment of the seeding step (this process) and of gunicorn."""
    return {
        "DJANGO_SETTINGS_MODULE": "tandem.settings",
        "DATABASE_URL": database_url(args.database_url, args.database_name),
        "REDIS_URL": args.redis_url,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "0",
        "HTTPS": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "TANDEM_HOME": str(home),
        "ARTIFACTS_ROOT": str(home / "artifacts"),
        # Every 404/409 is logged as a warning by Django; that is the expected traffic here.
        "LOG_LEVEL": "ERROR",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


@dataclass
class Annotator:
    user_id: int
    session: str
    csrf: str


def seed(args: argparse.Namespace, items: int) -> list[Annotator]:
    """Migrate, then write the model version, batch, annotators (with sessions) and queue."""
    from unittest import mock

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from annotation import services, tasks
    from annotation.models import Assignment, Batch, Comparison, Dialogue, Response, Side, Turn
    from annotation.permissions import ANNOTATOR
    from modelcore.tiny import save_tiny_model
    from rlhf.models import ModelVersion
    from rlhf.services import register_checkpoint

    started = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    log(f"migrated in {time.perf_counter() - started:.1f} s")

    root = Path(settings.ARTIFACTS_ROOT)
    directory = save_tiny_model(root / "models" / "tiny", seed=args.seed)
    version = register_checkpoint(
        ModelVersion.objects.create(name="tiny", artifact_path=str(directory.relative_to(root))),
        publish=True,
    )
    batch = Batch.objects.create(
        name="bench", model_a=version, model_b=version, max_new_tokens=16, overlap=1
    )

    # Annotators with unusable passwords (hashing 50 real ones would take half a minute) and a
    # session each, written through the configured session engine as a login would write it.
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"bench-annotator-{i}", password=make_password(None))
        for i in range(args.concurrency)
    )
    Group.objects.get(name=ANNOTATOR).user_set.add(*users)
    store = importlib.import_module(settings.SESSION_ENGINE).SessionStore
    annotators = []
    for user in users:
        session = store()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        csrf = "".join(secrets.choice(CSRF_ALPHABET) for _ in range(32))
        annotators.append(Annotator(user.pk, session.session_key, csrf))

    # The queue. A first few items go through the real service (import_prompts), with the
    # responses written here instead of by the generate worker, which is kept from being asked
    # (the broker may be shared); the rest are copies of those rows written in bulk, since the
    # service takes ~10 ms an item and a run needs thousands.
    started = time.perf_counter()
    text = "A response of a few words, as the model would write it."
    with mock.patch.object(tasks.generate_comparison, "delay"), transaction.atomic():
        imported = services.import_prompts(
            batch=batch,
            rows=[
                {
                    "prompt": f"Question {i}: how would you explain this to a child?",
                    "guideline": "helpfulness" if i % 5 else "safety",
                }
                for i in range(min(items, 20))
            ],
        )
        Response.objects.filter(comparison__in=imported).update(
            text=text, num_tokens=12, finish_reason="stop"
        )
        Comparison.objects.filter(pk__in=[c.pk for c in imported]).update(
            status=Comparison.Status.READY, ready_at=timezone.now()
        )
        template = Comparison.objects.select_related("turn").get(pk=imported[0].pk)
        sides = list(template.responses.all())
        for first in range(len(imported), items, 1000):
            count = min(items, first + 1000) - first
            dialogues = Dialogue.objects.bulk_create(
                Dialogue(batch=batch, source=Dialogue.Source.IMPORTED, guideline="helpfulness")
                for _ in range(count)
            )
            turns = Turn.objects.bulk_create(
                Turn(
                    dialogue=dialogue,
                    index=0,
                    prompt=f"Question {first + n}: how would you explain this to a child?",
                    prompt_tokens=template.turn.prompt_tokens,
                )
                for n, dialogue in enumerate(dialogues)
            )
            comparisons = Comparison.objects.bulk_create(
                Comparison(
                    turn=turn,
                    batch=batch,
                    status=Comparison.Status.READY,
                    left=random.choice(Side.values),
                    context_tokens=template.context_tokens,
                    ready_at=timezone.now(),
                )
                for turn in turns
            )
            Response.objects.bulk_create(
                Response(
                    comparison=comparison,
                    side=side.side,
                    model_version_id=side.model_version_id,
                    temperature=side.temperature,
                    top_p=side.top_p,
                    max_new_tokens=side.max_new_tokens,
                    seed=random.getrandbits(62),
                    text=text,
                    num_tokens=12,
                    finish_reason="stop",
                )
                for comparison in comparisons
                for side in sides
            )
            Assignment.objects.bulk_create(
                Assignment(comparison=comparison)
                for comparison in comparisons
                for _ in range(batch.overlap)
            )
    # Statistics as autovacuum would have gathered them on a table filled over days: without
    # them PostgreSQL plans the queue query for empty tables (hundreds of ms a fetch).
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    log(f"queued {items} comparisons in {time.perf_counter() - started:.1f} s")
    return annotators


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(
    args: argparse.Namespace, env: dict[str, str], home: Path, port: int
) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "tandem.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        args.worker_class,
        "--workers",
        str(args.workers),
        "--threads",
        str(args.threads),
        "--keep-alive",
        str(args.keep_alive),
        "--backlog",
        "2048",
        "--preload",  # Django (and torch, which the app imports) loaded once, then forked
        "--chdir",
        str(REPO),
        "--error-logfile",
        str(home / "gunicorn.log"),
    ]
    log(" ".join(command[2:]))
    with open(home / "gunicorn.log", "ab") as log_file:  # start-up errors land here too
        return subprocess.Popen(
            command,
            env={**os.environ, **env},
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            start_new_session=True,  # Ctrl-C reaches this script, which stops gunicorn in order
        )


def wait_ready(process: subprocess.Popen, port: int, home: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{log_tail(home)}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/annotate/api/progress/")
            connection.getresponse().read()
            connection.close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer within {timeout:.0f} s:\n{log_tail(home)}")


def log_tail(home: Path) -> str:
    path = home / "gunicorn.log"
    return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"


def stop_gunicorn(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)  # graceful: workers finish their requests
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children so far (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(master: int) -> float:
    """CPU seconds of gunicorn's master and its live workers."""
    total = process_cpu_seconds(master)
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        children = []
    return total + sum(process_cpu_seconds(int(child)) for child in children)


# --- the virtual annotators ---------------------------------------------------------------------


@dataclass
class Results:
    fetch_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    # (label id, comparison id, annotator id) of every 201
    acknowledged: list[tuple[int, int, int]] = field(default_factory=list)
    served: Counter = field(default_factory=Counter)  # comparison id -> times served
    errors: Counter = field(default_factory=Counter)
    double_submits: int = 0
    queue_empty: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] += 1


class Client:
    """One keep-alive connection, as a browser tab holds one."""

    def __init__(self, port: int, annotator: Annotator) -> None:
        self.port = port
        self.connection: http.client.HTTPConnection | None = None
        self.headers = {
            "Cookie": f"sessionid={annotator.session}; csrftoken={annotator.csrf}",
            "X-CSRFToken": annotator.csrf,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Host": f"127.0.0.1:{port}",
        }

    def post(self, path: str, body: dict | None = None) -> tuple[int, Any, float]:
        """Status, parsed JSON body (or None) and milliseconds of one POST."""
        data = json.dumps(body).encode() if body is not None else b""
        started = time.perf_counter()
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            self.connection.request("POST", path, body=data, headers=self.headers)
            response = self.connection.getresponse()
            payload = response.read()
        except Exception:
            self.close()
            raise
        elapsed = (time.perf_counter() - started) * 1000
        if response.will_close:
            self.close()
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = None
        return response.status, parsed, elapsed

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def run_annotator(
    annotator: Annotator,
    port: int,
    args: argparse.Namespace,
    start: float,
    end: float,
    stop: threading.Event,
    results: Results,
    rng: random.Random,
) -> None:
    main, second = Client(port, annotator), Client(port, annotator)
    # Annotators arrive over the first think time, not all in the same millisecond.
    if stop.wait(max(0.0, start + rng.uniform(0, args.think) - time.monotonic())):
        return
    try:
        while not stop.is_set() and time.monotonic() < end:
            try:
                status, body, elapsed = main.post("/annotate/api/queue/next/")
            except Exception as error:
                results.error(f"fetch: {type(error).__name__}")
                stop.wait(args.think)
                continue
            with results.lock:
                results.fetch_ms.append(elapsed)
            if status == 404:
                with results.lock:
                    results.queue_empty += 1
                stop.wait(max(args.think, 0.1))
                continue
            if status != 200 or not isinstance(body, dict) or "id" not in body:
                results.error(f"fetch: HTTP {status}")
                stop.wait(args.think)
                continue
            comparison = body["id"]
            with results.lock:
                results.served[comparison] += 1
            think = args.think * rng.uniform(0.5, 1.5)
            label = {
                "chosen": rng.choice(("left", "right")),
                "strength": rng.choice(STRENGTHS),
                "safety": rng.choice(SAFETY_LABELS),
                "time_spent_ms": int(think * 1000),
            }
            if stop.wait(think):
                break  # a run cut short: the item stays locked, as for a closed tab
            path = f"/annotate/api/comparisons/{comparison}/label/"
            if rng.random() < args.double_share:
                submit_twice(main, second, path, label, comparison, annotator, results)
            else:
                submit_once(main, path, label, comparison, annotator, results)
    finally:
        main.close()
        second.close()


def submit_once(client, path, label, comparison, annotator, results) -> None:
    try:
        status, body, elapsed = client.post(path, label)
    except Exception as error:
        results.error(f"submit: {type(error).__name__}")
        return
    with results.lock:
        results.submit_ms.append(elapsed)
    if status == 201 and isinstance(body, dict) and "label" in body:
        with results.lock:
            results.acknowledged.append((body["label"], comparison, annotator.user_id))
    else:
        results.error(f"submit: HTTP {status}")


def submit_twice(main, second, path, label, comparison, annotator, results) -> None:
    """A double click: the same label on two connections at once. Exactly one 201 and one 409
    naming the same label, or it counts as an error."""
    outcomes: list[Any] = [None, None]
    barrier = threading.Barrier(2)

    def send(index: int, client: Client) -> None:
        barrier.wait()
        try:
            outcomes[index] = client.post(path, label)
        except Exception as error:
            outcomes[index] = error

    helper = threading.Thread(target=send, args=(1, second))
    helper.start()
    send(0, main)
    helper.join()
    with results.lock:
        results.double_submits += 1
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            results.error(f"double submit: {type(outcome).__name__}")
            return
    with results.lock:
        results.submit_ms.extend(outcome[2] for outcome in outcomes)
    by_status = {outcome[0]: outcome[1] for outcome in outcomes}
    created, duplicate = by_status.get(201), by_status.get(409)
    if (
        sorted(outcome[0] for outcome in outcomes) != [201, 409]
        or not isinstance(created, dict)
        or not isinstance(duplicate, dict)
        or created.get("label") != duplicate.get("label")
    ):
        results.error(f"double submit: HTTP {sorted(outcome[0] for outcome in outcomes)}")
        return
    with results.lock:
        results.acknowledged.append((created["label"], comparison, annotator.user_id))


def run_load(
    annotators: list[Annotator], port: int, args: argparse.Namespace, stop: threading.Event
) -> Results:
    results = Results()
    start = time.monotonic()
    end = start + args.duration
    threads = [
        threading.Thread(
            target=run_annotator,
            args=(a, port, args, start, end, stop, results, random.Random(args.seed * 7919 + i)),
            name=f"annotator-{i}",
            daemon=True,
        )
        for i, a in enumerate(annotators)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():  # joined with a timeout so Ctrl-C gets through
            thread.join(0.5)
    return results


# --- checking and reporting ---------------------------------------------------------------------


def check_database(results: Results) -> dict[str, int]:
    from django.db import connections
    from django.db.models import Count

    from annotation.models import Label

    stored = set(Label.objects.values_list("pk", "comparison_id", "annotator_id"))
    acknowledged = set(results.acknowledged)
    duplicated = sum(
        row["n"] - 1
        for row in Label.objects.values("comparison_id", "annotator_id")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
    )
    shared = (
        Label.objects.values("comparison_id")
        .annotate(n=Count("annotator_id", distinct=True))
        .filter(n__gt=1)
        .count()
    )
    connections.close_all()
    return {
        "lost": len(acknowledged - stored),
        "duplicated": duplicated,
        "acknowledged_twice": len(results.acknowledged) - len(acknowledged),
        # stored but never acknowledged (a request that failed after its commit)
        "unacknowledged": len(stored - acknowledged),
        "shared": shared,
        "served_twice": sum(1 for n in results.served.values() if n > 1),
    }


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (position - low), 1)


def items_needed(args: argparse.Namespace) -> int:
    if args.items:
        return args.items
    # An annotator labels at most one item per shortest think time (half the mean); one more
    # each for the item in hand at the end, and a margin.
    per_second = 1 / max(args.think * 0.5, 0.005)
    return int(args.concurrency * (args.duration * per_second + 2)) + 50


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="tandem-annotate-load-"))
    env = server_environment(args, home)
    os.environ.update(env)
    gunicorn: subprocess.Popen | None = None
    stop = threading.Event()
    with throwaway_database(args, home):
        try:
            items = items_needed(args)
            annotators = seed(args, items)
            from django.db import connections

            connections.close_all()

            port = free_port()
            gunicorn = start_gunicorn(args, env, home, port)
            wait_ready(gunicorn, port, home)
            log(
                f"load: {args.concurrency} annotators, {args.duration:g} s, think {args.think:g} s, "
                f"{args.double_share:.0%} double submits"
            )
            load_before = os.getloadavg()
            server_cpu = server_cpu_seconds(gunicorn.pid)
            client_cpu = time.process_time()
            started = time.monotonic()
            results = run_load(annotators, port, args, stop)
            wall = time.monotonic() - started
            server_cpu = server_cpu_seconds(gunicorn.pid) - server_cpu
            client_cpu = time.process_time() - client_cpu
            load_after = os.getloadavg()
            stop_gunicorn(gunicorn)
            checks = check_database(results)
            requests = len(results.fetch_ms) + len(results.submit_ms)
            errors = sum(results.errors.values())
            if results.queue_empty:
                log(f"warning: the queue ran dry {results.queue_empty} times (raise --items)")
            return {
                "benchmark": "annotate_load",
                "concurrency": args.concurrency,
                "p50_ms": percentile(results.submit_ms, 50),
                "p99_ms": percentile(results.submit_ms, 99),
                "errors": errors,
                "lost": checks["lost"],
                "duplicated": checks["duplicated"],
                "labels": len(results.acknowledged),
                "submits": len(results.submit_ms),
                "max_ms": round(max(results.submit_ms), 1) if results.submit_ms else None,
                "fetch_p50_ms": percentile(results.fetch_ms, 50),
                "fetch_p99_ms": percentile(results.fetch_ms, 99),
                "fetches": len(results.fetch_ms),
                "double_submits": results.double_submits,
                "error_kinds": dict(results.errors),
                "queue_empty": results.queue_empty,
                "shared": checks["shared"],
                "served_twice": checks["served_twice"],
                "unacknowledged": checks["unacknowledged"],
                "acknowledged_twice": checks["acknowledged_twice"],
                "labels_per_s": round(len(results.acknowledged) / wall, 1),
                "requests_per_s": round(requests / wall, 1),
                "think_s": args.think,
                "duration_s": round(wall, 1),
                "gunicorn_workers": args.workers,
                "worker_class": args.worker_class,
                "threads": args.threads if args.worker_class == "gthread" else 1,
                "server_cpu_ms_per_request": round(server_cpu * 1000 / max(requests, 1), 2),
                "client_cpu_s": round(client_cpu, 1),
                "cpus": os.cpu_count(),
                "load_before": [round(x, 2) for x in load_before],
                "load_after": [round(x, 2) for x in load_after],
                "items": items,
            }
        finally:
            stop.set()
            if gunicorn is not None:
                stop_gunicorn(gunicorn)


if __name__ == "__main__":
    try:
        result = main()
    except KeyboardInterrupt:
        log("interrupted; cleaned up")
        sys.exit(130)
    print(json.dumps(result))
