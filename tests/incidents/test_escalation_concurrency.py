"""Two lifecycle ticks running at the same moment in two OS processes escalate each breached incident
exactly once (one timeline entry, one audit entry, one notification per target) and send each
notification once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db.models import Count
from django.utils import timezone

from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog
from governance.services.audit import audit_chain_verify
from incidents.models import Incident, IncidentEvent, IncidentEventKind, IncidentType, Notification
from incidents.services.lifecycle import lifecycle_fields
from tests.conftest import subprocess_database_url

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.worker,
    pytest.mark.xdist_group("worker"),
    pytest.mark.django_db(transaction=True),
]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BREACHED = 1200  # more than one chunk of 1,000 per process
PROCESS_TIMEOUT_S = 180

# One tick, started at an agreed wall-clock moment so both processes really run at once.
TICK = textwrap.dedent(
    """
    import json, os, time
    import django
    django.setup()
    from incidents.services.tick import lifecycle_tick
    start_at = float(os.environ["VIGIL_TICK_START_AT"])
    while time.time() < start_at:
        time.sleep(0.002)
    print(json.dumps(lifecycle_tick().as_dict()), flush=True)
    """
)


def breached_incidents(system, count: int) -> list[Incident]:
    """High incidents opened 20 minutes ago: acknowledge target missed 5 minutes ago, so exactly one
    step (the first) is due; the second comes 10 minutes from now."""
    opened_at = timezone.now() - timedelta(minutes=20)
    fields = lifecycle_fields(severity=Severity.HIGH, incident_type=IncidentType.DATA_QUALITY, opened_at=opened_at)
    incidents = []
    for n in range(count):
        incident = Incident(
            title=f"breached #{n}", system=system, team_id=system.team_id, severity=Severity.HIGH,
            fingerprint=f"concurrency-{n}", opened_at=opened_at, **fields,
        )  # fmt: skip
        incident.escalation_token = f"token-{n}"
        incidents.append(incident)
    return Incident.objects.bulk_create(incidents, batch_size=1000)


def tick_environment(start_at: float) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",  # eager Celery + locmem email: deliveries run in-process
        DATABASE_URL=subprocess_database_url(),
        VIGIL_IGNORE_DOTENV="1",
        VIGIL_TICK_START_AT=str(start_at),
        PYTHONUNBUFFERED="1",
    )
    return env


def test_two_ticks_in_two_processes_escalate_every_breached_incident_exactly_once(own_system, make_user, team):
    member = make_user(Role.REVIEWER, teams=[team], username="rita")
    breached_incidents(own_system, BREACHED)
    start_at = time.time() + 8  # both processes are set up (Django, connections) well before this

    processes = [
        subprocess.Popen(
            [sys.executable, "-c", TICK],
            cwd=PROJECT_ROOT,
            env=tick_environment(start_at),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=PROCESS_TIMEOUT_S) for process in processes]

    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
    reports = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    assert sum(report["escalated"] for report in reports) == BREACHED, reports

    escalated = IncidentEvent.objects.filter(kind=IncidentEventKind.ESCALATED)
    per_incident = escalated.values("incident").annotate(n=Count("id"))
    assert len(per_incident) == BREACHED
    assert {row["n"] for row in per_incident} == {1}

    audits = AuditLog.objects.filter(action=AuditAction.INCIDENT_ESCALATED)
    per_object = audits.values("object_id").annotate(n=Count("id"))
    assert len(per_object) == BREACHED
    assert {row["n"] for row in per_object} == {1}
    assert {entry.data["level"] for entry in audits} == {1}

    assert set(Incident.objects.values_list("escalation_level", flat=True)) == {1}
    notices = Notification.objects.filter(kind="escalation")
    assert notices.count() == BREACHED
    assert set(notices.values_list("target", flat=True)) == {member.email}
    # Both processes delivered pending rows at the same time: none was attempted twice.
    assert set(notices.exclude(status="pending").values_list("attempts", flat=True)) == {1}
    assert notices.filter(status="sent").count() >= 1000
    notified = IncidentEvent.objects.filter(kind=IncidentEventKind.NOTIFIED).values("data__notification_id")
    assert notified.annotate(n=Count("id")).filter(n__gt=1).count() == 0

    assert audit_chain_verify().ok
