"""Policy-as-code: a policy and its immutable, linted versions (issue 7; the plan's ``policy_versions``)."""

from __future__ import annotations

from typing import Any

from django.db import models

from governance.models.base import VigilModel
from governance.models.organization import Team, User

__all__ = ["ContentFormat", "Policy", "PolicyVersion", "PolicyVersionImmutable"]


class ContentFormat(models.TextChoices):
    YAML = "yaml", "YAML"
    JSON = "json", "JSON"


class PolicyVersionImmutable(ValueError):
    """An attempt to change or delete what a policy version says once it is written."""


class Policy(VigilModel):
    """A named policy (``metadata.id`` of its documents) whose content lives in numbered versions; at most one
    version is active (the one the evaluator and the CI/CD gate use). Written only by
    ``governance.services.policies`` (each write audited: the table is governed)."""

    # Every role reads every policy (the CI/CD gate and the people it answers need them); who may WRITE
    # a team's policy is checked by the services (admins, and governance leads of that team).
    team_scope_path = None

    key = models.SlugField(max_length=100, unique=True, help_text="The documents' metadata.id.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="policies",
        help_text="The owner team (metadata.owner_team); empty: platform-wide.",
    )
    active_version = models.ForeignKey(
        "PolicyVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The version in force; empty: the policy is inactive.",
    )
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        db_table = "policies"
        ordering = ["key"]
        verbose_name_plural = "policies"
        indexes = [models.Index(fields=["-updated_at"], name="policies_recent")]

    def __str__(self) -> str:
        return self.key

    @property
    def is_active(self) -> bool:
        return self.active_version_id is not None


class PolicyVersion(VigilModel):
    """One version of a policy exactly as it was submitted, with the linter's verdict at submission time.

    Evidence: what a version says (``IMMUTABLE_FIELDS``) never changes once written — ``save()`` refuses it,
    and on PostgreSQL a trigger refuses such an UPDATE and any DELETE whoever connects. Only its activation
    stamps and the shadow-replay report are written later.
    """

    IMMUTABLE_FIELDS = (
        "policy",
        "version",
        "content",
        "content_format",
        "document",
        "content_sha256",
        "validated",
        "validation_errors",
        "lint_counts",
    )

    team_scope_path = None

    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField(help_text="1, 2, … per policy.")
    content = models.TextField(help_text="The exact text submitted (YAML or JSON).")
    content_format = models.CharField(max_length=4, choices=ContentFormat.choices)
    document = models.JSONField(null=True, blank=True, help_text="The parsed document; empty when it did not parse.")
    content_sha256 = models.CharField(max_length=64)
    validated = models.BooleanField(default=False, help_text="The linter found no error.")
    validation_errors = models.JSONField(
        default=list, blank=True, help_text="The linter's error and warning findings (its JSON form)."
    )
    lint_counts = models.JSONField(default=dict, blank=True, help_text="Findings per level: error, warning, info.")
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    activated_at = models.DateTimeField(null=True, blank=True, help_text="Last activation (rollbacks included).")
    activated_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    shadow_report = models.JSONField(null=True, blank=True, help_text="What the version would have decided.")
    shadow_replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "policy_versions"
        ordering = ["policy", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "version"], name="policy_versions_policy_version"),
            models.CheckConstraint(condition=models.Q(version__gte=1), name="policy_versions_version_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.policy} v{self.version}"

    @property
    def is_active(self) -> bool:
        return self.policy.active_version_id == self.pk

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Refuses (``PolicyVersionImmutable``) an update that would change an immutable field."""
        if not self._state.adding:
            update_fields = kwargs.get("update_fields")
            checked = [
                name for name in self.IMMUTABLE_FIELDS if update_fields is None or _field_named(name, update_fields)
            ]
            if checked:
                self._refuse_changes(checked)
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any):
        raise PolicyVersionImmutable(f"{self} cannot be deleted: policy versions are evidence")

    def _refuse_changes(self, names: list[str]) -> None:
        attnames = [self._meta.get_field(name).attname for name in names]
        stored = type(self)._default_manager.filter(pk=self.pk).values(*attnames).first()
        if stored is None:
            return
        pairs = zip(names, attnames, strict=True)
        changed = [name for name, attname in pairs if stored[attname] != getattr(self, attname)]
        if changed:
            raise PolicyVersionImmutable(f"{self}: {', '.join(changed)} cannot change once written")


def _field_named(name: str, update_fields: Any) -> bool:
    return name in update_fields or f"{name}_id" in update_fields
