"""Root-cause analysis: templates per incident type, the RCA text on the incident, completeness.

A template is assigned when an incident opens (by its type); high and critical incidents close only
once every required field of their template is filled (``lifecycle.incident_close``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from governance.choices import AuditAction
from governance.services.audit import audit_record, describe_actor
from governance.services.errors import InvalidFields
from incidents.models import Incident, IncidentEvent, IncidentEventKind, IncidentType, RCATemplate

# Used when an incident has no template (one was deleted): the minimum an auditor expects.
DEFAULT_REQUIRED_FIELDS = ("root_cause", "impact", "corrective_actions")
FIELD_MAX_LENGTH = 20_000

_COMMON = (
    "## Timeline\nWhat happened, when it was detected, acknowledged, mitigated and resolved.\n\n"
    "## Root cause\nThe underlying cause, not the symptom (5 whys).\n\n"
    "## Impact\nWho and what was affected, for how long; any harm to people or rights (EU AI Act Art. 73).\n\n"
    "## Corrective actions\nWhat was fixed, and the follow-ups that keep it from happening again.\n"
)
# incident type -> (name, extra guidance, required fields)
TEMPLATES: dict[str, tuple[str, str, list[str]]] = {
    IncidentType.DATA_QUALITY: (
        "Data quality incident",
        "Name the upstream source and the check that should have caught it.",
        ["root_cause", "impact", "affected_data", "corrective_actions"],
    ),
    IncidentType.MODEL_PERFORMANCE: (
        "Model performance incident",
        "Include the model version, the metric and its baseline.",
        ["root_cause", "impact", "model_version", "corrective_actions"],
    ),
    IncidentType.FAIRNESS: (
        "Fairness incident",
        "Name the affected groups, the metric gap and the mitigation.",
        ["root_cause", "impact", "affected_groups", "corrective_actions"],
    ),
    IncidentType.SECURITY: (
        "Security incident",
        "Attack vector, data exposure, and whether authorities or users must be told.",
        ["root_cause", "impact", "attack_vector", "corrective_actions"],
    ),
    IncidentType.COMPLIANCE: (
        "Compliance incident",
        "The obligation breached (article, policy) and the evidence it is met again.",
        ["root_cause", "impact", "obligation", "corrective_actions"],
    ),
    IncidentType.AVAILABILITY: (
        "Telemetry loss incident",
        "How long oversight was blind and what was not monitored meanwhile.",
        ["root_cause", "impact", "corrective_actions"],
    ),
    IncidentType.HUMAN_OVERSIGHT: (
        "Escalated review",
        "The review that was escalated and what the reviewer saw.",
        ["root_cause", "impact", "corrective_actions"],
    ),
    IncidentType.OTHER: ("General incident", "", list(DEFAULT_REQUIRED_FIELDS)),
}


class RCAInvalid(InvalidFields):
    """Bad input; ``fields`` names each problem."""


def templates_ensure(apps=None, schema_editor=None) -> None:
    """Create the missing templates (data migration; idempotent, never overwrites an edited one)."""
    model = apps.get_model("incidents", "RCATemplate") if apps else RCATemplate
    existing = set(model.objects.values_list("incident_type", flat=True))
    model.objects.bulk_create(
        [
            model(
                incident_type=incident_type,
                name=name,
                template_content=f"# {name}\n\n{extra}\n\n{_COMMON}".replace("\n\n\n", "\n\n"),
                required_fields=required,
            )
            for incident_type, (name, extra, required) in TEMPLATES.items()
            if incident_type not in existing
        ]
    )


def template_ids() -> dict[str, Any]:
    """incident type → template id (one query; intake loads it once per batch)."""
    return dict(RCATemplate.objects.values_list("incident_type", "id"))


def template_id_for(incident_type: str, ids: dict[str, Any] | None = None) -> Any:
    ids = template_ids() if ids is None else ids
    return ids.get(incident_type) or ids.get(IncidentType.OTHER)


def required_fields(incident: Incident) -> list[str]:
    template = incident.rca_template
    return list(template.required_fields) if template is not None else list(DEFAULT_REQUIRED_FIELDS)


def missing_fields(incident: Incident) -> list[str]:
    """Required RCA fields of ``incident`` that are empty."""
    values = incident.rca or {}
    return [field for field in required_fields(incident) if not str(values.get(field) or "").strip()]


def incident_rca_update(
    *, incident_id: Any, values: dict[str, Any], actor: Any, now: datetime | None = None
) -> Incident:
    """Merge RCA field texts into the incident (an empty string clears a field). Sets
    ``rca_completed_at`` when every required field is filled, clears it when one is emptied again.
    Timeline + audit entry (field names, not texts: RCAs can be long)."""
    now = now or timezone.now()
    errors: dict[str, list[str]] = {}
    if not isinstance(values, dict) or not values:
        raise RCAInvalid({"rca": ['give at least one field, e.g. {"root_cause": "…"}']})
    for key, value in values.items():
        if not isinstance(value, str):
            errors[f"rca.{key}"] = ["must be text"]
        elif len(value) > FIELD_MAX_LENGTH:
            errors[f"rca.{key}"] = [f"longer than {FIELD_MAX_LENGTH} characters"]
        elif not key.replace("_", "").isalnum() or len(key) > 64:
            errors[f"rca.{key}"] = ["field names are letters, digits and underscores (≤ 64)"]
    if errors:
        raise RCAInvalid(errors)
    with transaction.atomic():
        incident = (
            Incident.objects.select_for_update(of=("self",)).select_related("rca_template").filter(pk=incident_id)
        ).first()
        if incident is None:
            raise RCAInvalid({"incident": [f"no incident {incident_id}"]})
        merged = {**(incident.rca or {}), **{k: v.strip() for k, v in values.items()}}
        merged = {k: v for k, v in merged.items() if v}
        incident.rca = merged
        complete = not missing_fields(incident)
        completed_at = incident.rca_completed_at if complete and incident.rca_completed_at else (
            now if complete else None)  # fmt: skip
        Incident.objects.filter(pk=incident.pk).update(
            rca=merged, rca_completed_at=completed_at, last_activity_at=now, updated_at=now
        )
        IncidentEvent.objects.create(
            incident=incident,
            kind=IncidentEventKind.RCA_UPDATED,
            at=now,
            actor=describe_actor(actor)[0],
            message="RCA complete." if complete else f"RCA updated ({', '.join(sorted(values))}).",
            data={"fields": sorted(values), "complete": complete},
        )
        audit_record(
            action=AuditAction.INCIDENT_RCA_UPDATED,
            actor=actor,
            target=incident,
            data={"fields": sorted(values), "complete": complete},
        )
        incident.refresh_from_db()
    return incident
