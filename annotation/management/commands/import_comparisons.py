"""Load an existing preference dataset (training JSONL rows) into a batch as labelled comparisons."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation.management.commands.import_prompts import _read_jsonl
from annotation.models import Batch
from annotation.services import AnnotationError, import_comparisons


class Command(BaseCommand):
    help = (
        "Import labelled comparisons from a JSONL file (- for stdin) in the training form the "
        'export writes: {"prompt", "chosen", "rejected", "strength", "safety", "guideline", '
        '"risky"?, "edited"?} per line, first turns only. Each becomes a ready comparison '
        "labelled by --annotator, its responses attributed to the batch's two models; the "
        "batch's own rule draws the held-out set. All rows are checked before any is stored."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--annotator", required=True, help="username the labels are by")
        parser.add_argument("--batch", help="batch name (default: the open batch)")

    def handle(self, path, annotator, batch, **options):
        rows = list(_read_jsonl(path))
        user = get_user_model().objects.filter(username=annotator).first()
        if user is None:
            raise CommandError(f"no user named {annotator!r}")
        query = Batch.objects.filter(name=batch) if batch else Batch.objects.filter(status="open")
        target = query.first()
        if target is None:
            raise CommandError(f"no batch named {batch!r}" if batch else "no batch is open")
        try:
            labels = import_comparisons(batch=target, rows=rows, annotator=user)
        except AnnotationError as error:
            raise CommandError(f"{path}: {error}; nothing was imported") from None
        heldout = sum(label.comparison.heldout for label in labels)
        self.stdout.write(
            f"imported {len(labels)} labelled comparisons into batch {target.name} "
            f"({heldout} held out), labelled by {user.username}"
        )
