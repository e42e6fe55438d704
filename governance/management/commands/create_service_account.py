from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from governance.choices import SERVICE_ROLES
from governance.models import Team, User
from governance.services.organization import service_account_create, service_account_rotate


class Command(BaseCommand):
    help = (
        "Create a service account (role ingest or cicd) and print its secret once. The account gets JWTs "
        "from POST /api/v1/auth/token with its name and secret."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--role", choices=sorted(SERVICE_ROLES), help="Required when creating.")
        parser.add_argument("--team", action="append", default=[], help="Team slug or name (repeatable).")
        parser.add_argument("--rotate", action="store_true", help="Issue a new secret for an existing account.")

    def handle(self, *args, name: str, role: str | None, team: list[str], rotate: bool, **options):
        if rotate and (role or team):
            raise CommandError("--rotate keeps the account's role and teams; drop --role/--team")
        if not rotate and not role:
            raise CommandError("--role is required when creating a service account")
        try:
            if rotate:
                user = User.objects.filter(username=name).first()
                if user is None:
                    raise CommandError(f"no account named {name!r}")
                credentials = service_account_rotate(user=user, actor="system:create_service_account")
            else:
                credentials = service_account_create(
                    name=name, role=role, teams=self._teams(team), actor="system:create_service_account"
                )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        roles = ", ".join(credentials.user.role_list)
        self.stdout.write(f"service account: {credentials.user.username} (role {roles})")
        self.stdout.write(f"secret: {credentials.secret}")
        self.stderr.write("Store the secret now; it is not shown again.")

    @staticmethod
    def _teams(refs: list[str]) -> list[Team]:
        teams = []
        for ref in refs:
            team = Team.objects.filter(slug=ref).first() or Team.objects.filter(name=ref).first()
            if team is None:
                raise CommandError(f"no team {ref!r}")
            teams.append(team)
        return teams
