"""The admin stays fast: the batch statistics page and every admin change list, timed at two
sizes of a batch on PostgreSQL, with their query counts.

Everything is set up here and torn down again, also on Ctrl-C or failure: a fresh database
(`--database-name`, dropped and created on the server named by `--database-url`, as
benchmarks/annotate_load.py does), migrated, with a temporary TANDEM_HOME holding a tiny model
version (modelcore.tiny), one batch, `--annotators` annotators and a reviewer. The batch is
grown to each size of `--labels` in turn (default 10,000 then 100,000): comparisons of imported
prompts, each labelled by `--overlap` annotators, with a gold item in 50, a review of one label
in 20 and a skip of one item in 100, written in bulk (the services are not what this measures),
then ANALYZE, as autovacuum would have run on a table filled over a week.

At each size Django's test Client, logged in as a superuser, gets every page `--repeats` times
after a warm-up; a page's time is its best run (the machine is shared), its query count that of
the last run. The page budget is 1 s, and a page's query count must not grow with the labels.

The last line of stdout is one JSON object: per page and size the seconds and queries, the
slowest page, and `under_budget` / `queries_constant`. Progress goes to stderr.

    python benchmarks/admin_stats.py
    python benchmarks/admin_stats.py --labels 1000,5000 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.annotate_load import database_url, log, throwaway_database  # noqa: E402

BUDGET_S = 1.0
CHUNK = 2000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--labels",
        default="10000,100000",
        help="comma-separated batch sizes in labels, increasing (the batch grows to each)",
    )
    parser.add_argument("--annotators", type=int, default=100)
    parser.add_argument("--overlap", type=int, default=2, help="labels per comparison")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per page")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="admin URL of the PostgreSQL server (the benchmark database is created beside it)",
    )
    parser.add_argument("--database-name", default="tandem_bench_admin")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(size) for size in args.labels.split(",")]
    except ValueError:
        parser.error("--labels: comma-separated whole numbers")
    if args.sizes != sorted(set(args.sizes)) or args.sizes[0] < args.overlap:
        parser.error("--labels: increasing sizes, each at least --overlap")
    if not 1 <= args.overlap <= min(args.annotators, 10):
        parser.error("--overlap: between 1 and min(--annotators, 10)")
    if not args.database_name.replace("_", "").isalnum():
        parser.error("--database-name: letters, digits and underscores only")
    return args


def environment(args: argparse.Namespace, home: Path) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "tandem.settings",
        "DATABASE_URL": database_url(args.database_url, args.database_name),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "0",
        "HTTPS": "0",
        "ALLOWED_HOSTS": "testserver",  # the test Client's host
        "TANDEM_HOME": str(home),
        "ARTIFACTS_ROOT": str(home / "artifacts"),
        "LOG_LEVEL": "ERROR",
    }


class World:
    """The batch being grown, its people, and how many comparisons it has so far."""

    def __init__(self, args: argparse.Namespace) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.hashers import make_password
        from django.contrib.auth.models import Group
        from django.core.management import call_command

        from annotation.models import Batch
        from annotation.permissions import ANNOTATOR, REVIEWER
        from modelcore.tiny import save_tiny_model
        from rlhf.models import ModelVersion
        from rlhf.services import register_checkpoint

        started = time.perf_counter()
        call_command("migrate", verbosity=0, interactive=False)
        log(f"migrated in {time.perf_counter() - started:.1f} s")
        from django.conf import settings

        root = Path(settings.ARTIFACTS_ROOT)
        directory = save_tiny_model(root / "models" / "tiny", seed=args.seed)
        version = register_checkpoint(
            ModelVersion.objects.create(
                name="tiny", artifact_path=str(directory.relative_to(root))
            ),
            publish=True,
        )
        self.batch = Batch.objects.create(name="bench", model_a=version, model_b=version)
        User = get_user_model()
        self.annotators = User.objects.bulk_create(
            User(username=f"annotator-{i}", password=make_password(None))
            for i in range(args.annotators)
        )
        Group.objects.get(name=ANNOTATOR).user_set.add(*self.annotators)
        self.reviewer = User.objects.create(username="reviewer", password=make_password(None))
        Group.objects.get(name=REVIEWER).user_set.add(self.reviewer)
        self.admin = User.objects.create_superuser("admin", password=None)
        self.args, self.items, self.random = args, 0, random.Random(args.seed)

    def grow_to(self, labels: int) -> None:
        """Add comparisons until the batch has `labels` labels (`overlap` per comparison)."""
        from django.db import connection, transaction

        from annotation.models import Label

        started = time.perf_counter()
        target = labels // self.args.overlap
        before = Label.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        with transaction.atomic():
            while self.items < target:
                count = min(CHUNK, target - self.items)
                self._add(self.items, count)
                self.items += count
            # A week of labels, not one instant: the new ones spread over seven days by id.
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE annotation_label SET created_at = created_at - (id %% 7) * %s"
                    " WHERE id > %s",
                    [timedelta(days=1), before],
                )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        log(f"grew to {labels:,} labels in {time.perf_counter() - started:.1f} s")

    def _add(self, first: int, count: int) -> None:
        from annotation.models import (
            Assignment,
            Comparison,
            Dialogue,
            Label,
            Response,
            Review,
            Safety,
            Side,
            Skip,
            Strength,
            Turn,
        )

        rng, batch, overlap = self.random, self.batch, self.args.overlap
        dialogues = Dialogue.objects.bulk_create(
            Dialogue(batch=batch, source=Dialogue.Source.IMPORTED, guideline="helpfulness")
            for _ in range(count)
        )
        turns = Turn.objects.bulk_create(
            Turn(dialogue=d, index=0, prompt=f"Question {first + n}?", prompt_tokens=6)
            for n, d in enumerate(dialogues)
        )
        comparisons = Comparison.objects.bulk_create(
            Comparison(
                turn=turn,
                batch=batch,
                status=Comparison.Status.READY,
                left=rng.choice(Side.values),
                heldout=rng.random() < 0.1,
                gold_choice=Side.A if (first + n) % 50 == 0 else "",
                context_tokens=12,
            )
            for n, turn in enumerate(turns)
        )
        Response.objects.bulk_create(
            Response(
                comparison=comparison,
                side=side,
                model_version_id=batch.model_a_id,
                temperature=0.7,
                top_p=0.9,
                max_new_tokens=64,
                seed=0,
                text="An answer of a few words.",
                num_tokens=7,
                finish_reason="stop",
            )
            for comparison in comparisons
            for side in Side.values
        )
        # Each item's annotators: `overlap` different ones, in turn.
        annotators = self.annotators
        people = [
            (comparison, annotators[(first + n + k * 7) % len(annotators)])
            for n, comparison in enumerate(comparisons)
            for k in range(overlap)
        ]
        Assignment.objects.bulk_create(
            Assignment(comparison=c, annotator=a, status=Assignment.Status.DONE) for c, a in people
        )
        labels = Label.objects.bulk_create(
            Label(
                comparison=c,
                annotator=a,
                chosen=Side.A if rng.random() < 0.55 else Side.B,
                strength=rng.choice(Strength.values),
                safety=rng.choice(Safety.values),
                time_spent_ms=rng.randint(5_000, 120_000),
            )
            for c, a in people
        )
        reviewed = labels[::20]
        outcomes = ["accepted", "accepted", "rejected"]
        for label in reviewed:
            label.review_status = rng.choice(outcomes)
        Label.objects.bulk_update(reviewed, ["review_status"])
        Review.objects.bulk_create(
            Review(
                label=label,
                reviewer=self.reviewer,
                outcome=label.review_status,
                reason="" if label.review_status == "accepted" else "careless",
            )
            for label in reviewed
        )
        Skip.objects.bulk_create(
            Skip(comparison=c, annotator=annotators[-1 - n % 3], reason="unclear_prompt")
            for n, c in enumerate(comparisons[::100])
        )


def pages(world: World) -> dict[str, str]:
    """The batch page and the change list of every model registered with the admin."""
    from django.contrib import admin
    from django.urls import reverse

    urls = {"batch statistics": reverse("admin:annotation_batch_change", args=[world.batch.pk])}
    for model in admin.site._registry:
        meta = model._meta
        urls[f"{meta.app_label}.{meta.model_name} list"] = reverse(
            f"admin:{meta.app_label}_{meta.model_name}_changelist"
        )
    return urls


def measure(client, url: str, repeats: int) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm-up: templates, caches, the first plan of each query
    best = float("inf")
    for _ in range(repeats):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
        best = min(best, elapsed)
    return {"seconds": round(best, 4), "queries": len(queries)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="tandem-admin-stats-"))
    (home / "static").mkdir()  # the static root whitenoise looks for (nothing is served)
    os.environ.update(environment(args, home))
    with throwaway_database(args, home):
        import django

        django.setup()
        from django.test import Client

        world = World(args)
        client = Client()
        client.force_login(world.admin)
        urls = pages(world)
        figures: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in urls}
        for size in args.sizes:
            world.grow_to(size)
            for name, url in urls.items():
                figures[name][str(size)] = measure(client, url, args.repeats)
                log(f"{size:>7,} labels  {name:<32} {figures[name][str(size)]}")
        slowest = max(
            ((name, size, f["seconds"]) for name, by in figures.items() for size, f in by.items()),
            key=lambda row: row[2],
        )
        return {
            "benchmark": "admin_stats",
            "labels": args.sizes,
            "annotators": args.annotators,
            "overlap": args.overlap,
            "pages": figures,
            "slowest": {"page": slowest[0], "labels": int(slowest[1]), "seconds": slowest[2]},
            "budget_s": BUDGET_S,
            "under_budget": slowest[2] < BUDGET_S,
            "queries_constant": all(
                len({f["queries"] for f in by.values()}) == 1 for by in figures.values()
            ),
            "cpus": os.cpu_count(),
            "load": [round(x, 2) for x in os.getloadavg()],
        }


if __name__ == "__main__":
    try:
        result = main()
    except KeyboardInterrupt:
        log("interrupted; cleaned up")
        sys.exit(130)
    print(json.dumps(result))
