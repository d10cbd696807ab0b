"""manage.py export_labels OUT.jsonl [--batch NAME ...] [--raw | --format trl] [--exclude-heldout]"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.export import (
    TRAINING_FORMATS,
    UnknownBatch,
    raw_records,
    resolve_batches,
    write_jsonl,
)
from annotation.models import Batch


class Command(BaseCommand):
    help = (
        "Write labels as JSONL: the training rows (prompt/context, chosen, rejected, strength, "
        "margin, safety, batch, held-out flag, annotator; --format trl: TRL's conversational "
        "prompt/chosen/rejected messages) or, with --raw, every stored field of each label "
        "followed by the skips. OUT is a file, written whole or not at all, or - for "
        "standard output."
    )

    def add_arguments(self, parser):
        parser.add_argument("out", help="the JSONL file to write, or - for standard output")
        parser.add_argument(
            "--batch",
            action="append",
            dest="batches",
            metavar="NAME",
            help="export this batch only (repeat for several; default: every batch)",
        )
        parser.add_argument(
            "--raw", action="store_true", help="raw label and skip records, not training rows"
        )
        parser.add_argument(
            "--format",
            choices=sorted(TRAINING_FORMATS),
            default="tandem",
            help="the training rows' format: Tandem's (default) or TRL's conversational one",
        )
        parser.add_argument(
            "--exclude-heldout",
            action="store_true",
            help="leave out the held-out test sets' labels",
        )

    def handle(
        self, *args, out: str, batches, raw: bool, format: str, exclude_heldout: bool, **options
    ):
        if raw and format != "tandem":
            raise CommandError("--format applies to training rows, not to --raw records")
        try:
            selected = resolve_batches(batches)
        except UnknownBatch as error:
            recent = ", ".join(Batch.objects.values_list("name", flat=True)[:10])  # newest first
            raise CommandError(f"{error} (recent batches: {recent or 'none yet'})") from None
        export = raw_records if raw else TRAINING_FORMATS[format]
        records = export(selected, include_heldout=not exclude_heldout)
        if out == "-":
            count = write_jsonl(records, self.stdout)  # every line ends in the wrapper's "\n"
        else:
            count = self._write_atomically(Path(out), records)
        kind = "raw records" if raw else f"training rows ({format})"
        where = "standard output" if out == "-" else out
        self.stderr.write(f"wrote {count} {kind} to {where}")

    @staticmethod
    def _write_atomically(path: Path, records) -> int:
        """A temporary file beside the target, renamed over it once complete: a reader never
        sees half an export, and a failed export leaves the old file as it was."""
        directory = path.resolve().parent
        if not directory.is_dir():
            raise CommandError(f"cannot write {path}: {directory} is not a directory")
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                count = write_jsonl(records, file)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return count
