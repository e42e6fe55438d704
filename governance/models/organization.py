"""Teams, people and the AI systems they own."""

import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models

from governance.choices import HUMAN_ROLES, EntityType, RiskClass, Role
from governance.models.base import VigilModel

__all__ = ["AISystem", "Team", "User"]


class Team(VigilModel):
    """A group of people that owns AI systems; the unit of data scoping in the API and admin."""

    # Team scoping: a caller sees a team when it is one of theirs.
    team_scope_path = "pk"

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    email = models.EmailField(blank=True, help_text="Where team notifications go.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    """A person or a service account. Roles are group memberships (see ``governance.choices.Role``)."""

    team_scope_path = "teams"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    is_service_account = models.BooleanField(
        default=False, help_text="Machine identity (ingest, CI/CD): API only, never the admin."
    )
    teams = models.ManyToManyField(Team, related_name="members", blank=True)

    class Meta:
        db_table = "governance_user"
        ordering = ["username"]

    @property
    def role_names(self) -> set[str]:
        """Role names of this user, cached per instance (one query)."""
        cached = getattr(self, "_role_names", None)
        if cached is None:
            cached = {group.name for group in self.groups.all()}  # uses prefetch_related("groups") if present
            self._role_names = cached
        return cached

    @property
    def role_list(self) -> list[str]:
        return sorted(self.role_names)

    def has_role(self, *roles: str) -> bool:
        if self.is_superuser and Role.ADMIN in roles:
            return True
        return bool(self.role_names.intersection(roles))

    @property
    def is_admin_role(self) -> bool:
        return self.is_superuser or Role.ADMIN in self.role_names

    @property
    def is_human_operator(self) -> bool:
        """May use the Django admin: a person (not a service account) holding a human role."""
        if not self.is_active or self.is_service_account:
            return False
        return self.is_superuser or bool(self.role_names.intersection(HUMAN_ROLES))


class AISystem(VigilModel):
    """An AI system under governance: a model, a service built on models, or a dataset."""

    team_scope_path = "team"

    name = models.CharField(max_length=200, unique=True)
    entity_type = models.CharField(max_length=16, choices=EntityType.choices, db_index=True)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="systems")
    risk_class = models.CharField(
        max_length=16, choices=RiskClass.choices, db_index=True, help_text="EU AI Act risk tier."
    )
    owner = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_systems")
    description = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True, db_index=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "AI system"
        verbose_name_plural = "AI systems"
        indexes = [models.Index(fields=["team", "risk_class"])]

    def __str__(self) -> str:
        return self.name
