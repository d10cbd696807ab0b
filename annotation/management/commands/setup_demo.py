"""First start of the embedded default: the base model, an open batch, and demo logins."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from annotation.models import Batch
from annotation.permissions import ANNOTATOR, RESEARCHER, REVIEWER
from annotation.services import open_next_batch
from rlhf.services import ModelImportError, ensure_base_model

DEMO_USERS = (
    # username, password, staff, groups
    ("admin", "tandem-admin", True, (ANNOTATOR, REVIEWER, RESEARCHER)),
    ("annotator", "tandem-annotator", False, (ANNOTATOR,)),
)


class Command(BaseCommand):
    help = "Import the base model if needed, open a batch if none is open, create demo users."

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-demo-users", action="store_true", help="skip the demo logins (production)"
        )

    def handle(self, no_demo_users, **options):
        try:
            version = ensure_base_model()
        except ModelImportError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"base model: {version.name} ({version.status})")
        batch = Batch.objects.filter(status=Batch.Status.OPEN).first() or open_next_batch()
        self.stdout.write(f"open batch: {batch.name}")
        if no_demo_users:
            return
        User = get_user_model()
        for username, password, staff, groups in DEMO_USERS:
            user, created = User.objects.get_or_create(
                username=username, defaults={"is_staff": staff, "is_superuser": staff}
            )
            if created:
                user.set_password(password)
                user.save()
            user.groups.add(*Group.objects.filter(name__in=groups))
            self.stdout.write(
                f"login: {username} / {password}"
                + ("" if created else " (existing user: password unchanged)")
            )
