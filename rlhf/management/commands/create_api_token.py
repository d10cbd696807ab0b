"""manage.py create_api_token USERNAME --name NAME"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation.permissions import RESEARCHER, has_role
from rlhf.authentication import create_api_token
from rlhf.models import ApiToken


class Command(BaseCommand):
    help = (
        "Make a research API token for a user and print it. Only its digest is stored, so this "
        "is the one time it is shown; revoke it in the admin (API tokens)."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="what the token is for")

    def handle(self, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        name = name.strip()
        limit = ApiToken._meta.get_field("name").max_length
        if not name or len(name) > limit:
            raise CommandError(f"--name must say what the token is for, in 1-{limit} characters")
        if not has_role(user, RESEARCHER):
            self.stderr.write(
                f"warning: {username} is neither a researcher nor an admin: the API refuses "
                "the token (403) until they are"
            )
        _, token = create_api_token(user=user, name=name)
        self.stdout.write(token)
