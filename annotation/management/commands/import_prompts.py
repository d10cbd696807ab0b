"""Queue mode: load prompts from JSONL into the open batch; workers pre-generate their pairs."""

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Batch
from annotation.services import AnnotationError, import_prompts


class Command(BaseCommand):
    help = (
        'Import prompts for queue mode from a JSONL file (- for stdin): one {"prompt": ..., '
        '"guideline": "helpfulness"|"safety", "risky": false} per line.'
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--batch", help="batch name (default: the open batch)")

    def handle(self, path, batch, **options):
        rows = list(_read_jsonl(path))
        query = Batch.objects.filter(name=batch) if batch else Batch.objects.filter(status="open")
        target = query.first()
        if target is None:
            raise CommandError(f"no batch named {batch!r}" if batch else "no batch is open")
        try:
            comparisons = import_prompts(batch=target, rows=rows)
        except AnnotationError as error:
            raise CommandError(f"{path}: {error}; nothing was imported") from None
        self.stdout.write(
            f"queued {len(comparisons)} prompts in batch {target.name}, "
            f"{target.overlap} annotator(s) each; their responses are being generated"
        )


def _read_jsonl(path: str):
    try:
        stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error}") from None
    with stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                raise CommandError(f"{path}, line {number}: not JSON ({error.msg})") from None
