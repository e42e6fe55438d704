"""The event pipeline's tables: raw events and their ingest batches, detection rules, alerts,
heartbeats (for absence rules), simulations and the ground-truth labels of planted scenarios.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from governance.choices import Severity
from governance.models import AISystem, VigilModel


class Category(models.TextChoices):
    DATA_QUALITY = "data_quality", "Data quality"
    MODEL_PERF = "model_perf", "Model performance"
    FAIRNESS = "fairness", "Fairness"
    SECURITY = "security", "Security"
    COMPLIANCE = "compliance", "Compliance"


HEARTBEAT_SIGNAL = "heartbeat"


class IngestBatch(models.Model):
    """One accepted ``POST /events`` request (or one generator chunk): the unit of processing.

    The outbox: ``processed_at`` stays null until ``oversight.process_batch`` has evaluated the batch
    in one transaction; ``oversight.sweep_outbox`` re-enqueues batches left unprocessed too long.
    """

    team_scope_path = None  # batches span systems of several teams; only admins browse them

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    received_at = models.DateTimeField(db_index=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    simulation = models.ForeignKey(
        "oversight.Simulation", null=True, blank=True, on_delete=models.SET_NULL, related_name="batches"
    )
    accepted = models.PositiveIntegerField(default=0, help_text="New events stored from this batch.")
    duplicates = models.PositiveIntegerField(default=0, help_text="Events whose event_id was already stored.")
    processed_at = models.DateTimeField(null=True, blank=True)
    enqueue_count = models.PositiveSmallIntegerField(default=1, help_text="Times processing was enqueued.")
    processing_ms = models.FloatField(null=True, blank=True)
    alerts_fired = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "event_batches"
        ordering = ["-received_at"]
        verbose_name_plural = "ingest batches"
        indexes = [
            models.Index(
                fields=["received_at"], name="event_batches_unprocessed", condition=Q(processed_at__isnull=True)
            )
        ]

    def __str__(self) -> str:
        return f"batch {self.id} ({self.accepted} events)"


class EventRaw(models.Model):
    """One telemetry event as received. Append-only apart from ``processed_at`` (the outbox mark)."""

    team_scope_path = "system__team"

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True, help_text="Client-supplied idempotency key (generated if absent).")
    # events_raw is the append-only, high-volume table: no database FK constraints (each costs a
    # lookup per row at commit, about half a raw COPY). Ingest resolves every system before writing
    # and writes the batch row in the same transaction; Django still enforces PROTECT on delete.
    # No index of its own either: the window indexes below start with system_id.
    system = models.ForeignKey(
        AISystem, on_delete=models.PROTECT, related_name="events", db_index=False, db_constraint=False
    )
    category = models.CharField(max_length=16, choices=Category.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    signal = models.CharField(max_length=64)
    value = models.FloatField()
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField()
    batch = models.ForeignKey(
        IngestBatch, on_delete=models.PROTECT, related_name="events", db_column="batch_id", db_constraint=False
    )
    attributes = models.JSONField(default=dict, blank=True)
    scenario_id = models.CharField(max_length=64, null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "events_raw"
        ordering = ["-occurred_at"]
        verbose_name = "event"
        indexes = [
            models.Index(fields=["system", "signal", "occurred_at"], name="events_raw_window"),
            models.Index(fields=["system", "occurred_at"], name="events_raw_system_time"),
            models.Index(fields=["category", "occurred_at"], name="events_raw_category_time"),
            models.Index(fields=["occurred_at"], name="events_raw_occurred"),
            # Only simulated telemetry carries a scenario id: a partial index stays small.
            models.Index(fields=["scenario_id"], name="events_raw_scenario", condition=Q(scenario_id__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.signal}={self.value:g} on {self.system_id}"


class RuleKind(models.TextChoices):
    THRESHOLD = "threshold", "Threshold (one breach of the critical level)"
    RATE = "rate", "Rate (N warning breaches in a window)"
    ABSENCE = "absence", "Absence (no heartbeat in a window)"
    COMPOUND = "compound", "Compound (distinct signals on one system in the correlation window)"


class DetectionRule(VigilModel):
    """A detection rule. Its numbers live in the config registry under ``config_key``; the row holds
    what an operator switches: whether it is enabled and its severity floor."""

    team_scope_path = None

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=RuleKind.choices, db_index=True)
    category = models.CharField(
        max_length=16, choices=Category.choices, blank=True, help_text="Blank: signals of every category."
    )
    signal = models.CharField(max_length=64, blank=True, help_text="Blank: every signal the thresholds name.")
    config_key = models.CharField(max_length=100, help_text="Registry key holding this rule's numbers.")
    severity = models.CharField(
        max_length=16,
        choices=Severity.choices,
        help_text="Severity floor: an alert takes the higher of this and its events' declared severity.",
    )
    enabled = models.BooleanField(default=True, db_index=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return self.name


class AlertStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


OPEN_ALERT_STATUSES = (AlertStatus.PENDING, AlertStatus.FIRING)


class Alert(VigilModel):
    """A detected problem, deduplicated by ``fingerprint`` while open (pending or firing).

    ``pending``: the rule's condition is partly met (a rate rule below its count); ``firing``: met,
    ``detected_at`` set and routed; ``resolved``: no new breach for the quiet period. A later breach
    with the same fingerprint is a new occurrence (a new row).
    """

    team_scope_path = "system__team"

    fingerprint = models.CharField(max_length=64, db_index=True)
    rule = models.ForeignKey(DetectionRule, on_delete=models.PROTECT, related_name="alerts")
    system = models.ForeignKey(AISystem, on_delete=models.PROTECT, related_name="alerts")
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.PENDING, db_index=True)
    severity = models.CharField(max_length=16, choices=Severity.choices, db_index=True)
    category = models.CharField(max_length=16, choices=Category.choices, blank=True)
    signal = models.CharField(max_length=64, blank=True)
    first_event_at = models.DateTimeField(help_text="Event time of the earliest contributing event.")
    detected_at = models.DateTimeField(null=True, blank=True, help_text="When the alert started firing.")
    last_seen_at = models.DateTimeField(help_text="Event time of the latest contributing event.")
    resolved_at = models.DateTimeField(null=True, blank=True)
    count = models.PositiveIntegerField(default=0, help_text="Contributing events.")
    labels = models.JSONField(default=dict, help_text="Identity labels: part of the fingerprint.")
    annotations = models.JSONField(default=dict, blank=True, help_text="Values and thresholds; not identity.")
    evidence_event_ids = models.JSONField(default=list, blank=True, help_text="event_id of contributing events.")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=Q(status__in=["pending", "firing"]),
                name="alert_fingerprint_unique_while_open",
            )
        ]
        indexes = [
            models.Index(fields=["status", "last_seen_at"], name="alert_open_last_seen"),
            models.Index(fields=["system", "status"], name="alert_system_status"),
            models.Index(fields=["detected_at"], name="alert_detected"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_id and self.rule.name} on {self.system} ({self.status})"

    @property
    def is_compound(self) -> bool:
        return self.rule.kind == RuleKind.COMPOUND


class SystemHeartbeat(models.Model):
    """The latest heartbeat of each system that sends them (absence rules watch these)."""

    team_scope_path = "system__team"

    system = models.OneToOneField(AISystem, primary_key=True, on_delete=models.CASCADE, related_name="heartbeat")
    last_seen_at = models.DateTimeField(db_index=True, help_text="Event time of the latest heartbeat.")
    last_received_at = models.DateTimeField(
        db_index=True, help_text="Arrival time of the latest heartbeat (the wall-clock absence check uses it)."
    )
    last_event_id = models.UUIDField()

    class Meta:
        db_table = "system_heartbeats"

    def __str__(self) -> str:
        return f"{self.system_id} last beat {self.last_seen_at:%Y-%m-%d %H:%M:%S}"


class SimulationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"


ACTIVE_SIMULATION_STATUSES = (SimulationStatus.PENDING, SimulationStatus.RUNNING, SimulationStatus.STOPPING)


def default_counters() -> dict[str, int]:
    return {"generated": 0, "ingested": 0, "processed": 0, "alerts": 0, "incidents": 0, "reviews": 0}


class Simulation(VigilModel):
    """A synthetic load run: the generator's events fed through the real pipeline at a set rate,
    measured against the planted scenarios' ground truth."""

    team_scope_path = None

    status = models.CharField(
        max_length=16, choices=SimulationStatus.choices, default=SimulationStatus.PENDING, db_index=True
    )
    total = models.PositiveIntegerField()
    batch_size = models.PositiveIntegerField(default=500)
    rate_per_s = models.FloatField(null=True, blank=True, help_text="Events per second; blank: as fast as possible.")
    seed = models.BigIntegerField(default=42)
    mix = models.JSONField(default=dict, blank=True, help_text="Category shares; blank: the default mix.")
    counters = models.JSONField(default=default_counters)
    cursor = models.PositiveIntegerField(default=0, help_text="Index of the next event to generate.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    team = models.ForeignKey(
        "governance.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="simulations"
    )
    systems = models.ManyToManyField(AISystem, blank=True, related_name="simulations")
    report = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"simulation {self.seed}/{self.total} ({self.status})"


class ScenarioKind(models.TextChoices):
    SINGLE_BREACH = "single_breach", "Single-signal breach"
    SUSTAINED_DRIFT = "sustained_drift", "Sustained drift"
    COMPOUND = "compound", "Multi-signal incident"
    HEARTBEAT_LOSS = "heartbeat_loss", "Heartbeat loss"
    NEAR_MISS = "near_miss", "Near miss (noise that must not alert)"


class ScenarioLabel(VigilModel):
    """Ground truth for one planted scenario: which rule should catch it, on which system, from when."""

    team_scope_path = "system__team"

    scenario_id = models.CharField(max_length=64, unique=True)
    simulation = models.ForeignKey(
        Simulation, null=True, blank=True, on_delete=models.CASCADE, related_name="scenarios"
    )
    seed = models.BigIntegerField()
    kind = models.CharField(max_length=24, choices=ScenarioKind.choices)
    system = models.ForeignKey(AISystem, on_delete=models.CASCADE, related_name="scenario_labels")
    category = models.CharField(max_length=16, choices=Category.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    signals = models.JSONField(default=list)
    expected_rule = models.CharField(max_length=100, blank=True, help_text="Blank: nothing should fire.")
    onset_at = models.DateTimeField(help_text="Event time of the first anomalous event (or of the missed beat).")
    event_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["onset_at"]
        indexes = [models.Index(fields=["simulation", "expected_rule"])]

    def __str__(self) -> str:
        return f"{self.scenario_id} ({self.kind})"
