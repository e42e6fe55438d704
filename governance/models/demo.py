"""The golden demo: scenarios (the plan's ``demo_scenarios``) and the runs that play them end to end."""

from django.db import models
from django.db.models import Q

from governance.choices import DemoCategory, DemoRunStatus
from governance.models.base import VigilModel
from governance.models.organization import User

__all__ = ["DemoRun", "DemoScenario"]


class DemoScenario(VigilModel):
    """A story the platform can be driven through (the plan's ``demo_scenarios`` columns).

    ``steps`` is the ordered list of ``{"key": <registered step>, "params": {...}}``;
    ``expected_outcomes`` maps a step key to ``{counter: {op: value}}`` bounds checked after that step
    runs (ops: ``eq``, ``gte``, ``gt``, ``lte``, ``lt``, ``in``). The registry of steps lives in
    ``governance.services.demo_steps``.
    """

    team_scope_path = None

    scenario_name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    steps = models.JSONField(default=list)
    expected_outcomes = models.JSONField(default=dict)
    duration_seconds = models.PositiveIntegerField(default=90, help_text="The time budget the scenario is built for.")
    category = models.CharField(max_length=16, choices=DemoCategory.choices, db_index=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        db_table = "demo_scenarios"
        ordering = ["category", "scenario_name"]

    def __str__(self) -> str:
        return self.scenario_name


class DemoRun(VigilModel):
    """One play of a scenario: progress persisted after every step (the admin page follows it live),
    the KPI scorecard before and after, and the slice of the audit chain it wrote (``audit_seq_first`` …
    ``audit_seq_last``). At most one run is active (pending or running) at a time: ``active`` is True
    only then, and unique while True."""

    team_scope_path = None

    scenario = models.ForeignKey(DemoScenario, on_delete=models.PROTECT, related_name="runs")
    mode = models.CharField(max_length=16, choices=DemoCategory.choices)
    seed = models.BigIntegerField(default=42)
    status = models.CharField(
        max_length=16, choices=DemoRunStatus.choices, default=DemoRunStatus.PENDING, db_index=True
    )
    active = models.BooleanField(default=True, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    current_step = models.CharField(max_length=64, blank=True)
    steps_total = models.PositiveIntegerField(default=0)
    step_results = models.JSONField(default=list, blank=True)
    kpis_before = models.JSONField(default=dict, blank=True)
    kpis_after = models.JSONField(default=dict, blank=True)
    counters = models.JSONField(default=dict, blank=True)
    started_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    audit_seq_first = models.BigIntegerField(null=True, blank=True)
    audit_seq_last = models.BigIntegerField(null=True, blank=True)
    evidence_sha256 = models.CharField(max_length=64, blank=True)
    evidence_path = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        db_table = "demo_runs"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["active"], condition=Q(active=True), name="demo_run_one_active"),
        ]

    def __str__(self) -> str:
        return f"{self.scenario} · {self.id.hex[:8]} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in (DemoRunStatus.SUCCEEDED, DemoRunStatus.FAILED)
