"""EU AI Act Art. 73: marking serious incidents, their deadline, the filing, the countdown and the report."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import registry
from governance.choices import AuditAction, RiskClass
from governance.models import AuditLog
from incidents.models import IncidentEvent, IncidentEventKind, IncidentLink, LinkRelation, LinkTarget, RegulatoryBasis
from incidents.services.graph import incident_links_on_open
from incidents.services.lifecycle import IncidentInvalid, IncidentTransitionError
from incidents.services.rca import incident_rca_update
from incidents.services.regulatory import (
    REFERENCE_MAX_LENGTH,
    incident_mark_reported,
    incident_mark_serious,
    incident_report,
    incident_report_html,
    regulatory_countdown,
    regulatory_deadline,
)
from tests.factories import AISystemFactory
from tests.incidents.factories import IncidentFactory
from tests.oversight.factories import AlertFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 4, 1, 8, 30, tzinfo=UTC)
DAY = 86_400


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def high_risk_system(team):
    return AISystemFactory(name="credit-scoring", team=team, risk_class=RiskClass.HIGH)


@pytest.fixture
def incident(high_risk_system):
    return IncidentFactory(system=high_risk_system, title="[high] threshold:fairness: dp_gap on credit-scoring")


# --- marking serious --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("basis", "days"),
    [(RegulatoryBasis.STANDARD, 15), (RegulatoryBasis.WIDESPREAD, 2), (RegulatoryBasis.DEATH, 10)],
)
def test_the_deadline_counts_the_configured_days_of_the_basis_from_now(incident, lead, basis, days):
    marked = incident_mark_serious(incident_id=incident.pk, basis=basis, actor=lead)

    assert marked.serious is True
    assert marked.regulatory_basis == basis
    assert marked.regulatory_deadline_at == T0 + timedelta(days=days)


def test_the_day_counts_come_from_the_config_registry(incident, lead, admin_user):
    registry.set(
        "incidents.regulatory",
        {"standard_days": 7, "widespread_days": 1, "death_days": 5, "warn_before_hours": [24]},
        user=admin_user,
        reason="stricter internal target",
    )

    marked = incident_mark_serious(incident_id=incident.pk, basis=RegulatoryBasis.STANDARD, actor=lead)

    assert marked.regulatory_deadline_at == T0 + timedelta(days=7)


def test_the_deadline_counts_from_when_the_provider_became_aware(incident, lead):
    aware = T0 - timedelta(days=3, hours=4)

    marked = incident_mark_serious(incident_id=incident.pk, basis=RegulatoryBasis.DEATH, actor=lead, aware_at=aware)

    assert marked.regulatory_deadline_at == aware + timedelta(days=10)


def test_marking_serious_writes_a_timeline_entry_and_an_audit_entry(incident, lead):
    incident_mark_serious(incident_id=incident.pk, basis=RegulatoryBasis.STANDARD, actor=lead, note="user complaint")

    event = IncidentEvent.objects.get(incident=incident, kind=IncidentEventKind.REGULATORY)
    assert event.actor == "lena"
    assert event.data["basis"] == "standard"
    assert event.data["aware_at"] == T0.isoformat()
    assert event.data["deadline_at"] == (T0 + timedelta(days=15)).isoformat()
    assert "report due by 2026-04-16 08:30 UTC" in event.message
    entry = AuditLog.objects.get(action=AuditAction.INCIDENT_MARKED_SERIOUS, object_id=str(incident.pk))
    assert entry.actor == "lena"
    assert entry.data["note"] == "user complaint"
    assert entry.data["deadline_at"] == event.data["deadline_at"]


@pytest.mark.parametrize("risk_class", [RiskClass.LIMITED, RiskClass.MINIMAL])
def test_an_incident_on_a_system_that_is_not_high_risk_cannot_be_marked_serious(team, lead, risk_class):
    incident = IncidentFactory(system=AISystemFactory(team=team, risk_class=risk_class))

    with pytest.raises(IncidentInvalid) as refused:
        incident_mark_serious(incident_id=incident.pk, basis=RegulatoryBasis.STANDARD, actor=lead)

    assert list(refused.value.fields) == ["serious"]
    assert "high-risk" in refused.value.fields["serious"][0]
    incident.refresh_from_db()
    assert (incident.serious, incident.regulatory_deadline_at) == (False, None)
    assert not AuditLog.objects.filter(action=AuditAction.INCIDENT_MARKED_SERIOUS).exists()
    assert not IncidentEvent.objects.filter(kind=IncidentEventKind.REGULATORY).exists()


def test_an_unknown_basis_and_a_future_awareness_are_refused_by_name(incident, lead):
    with pytest.raises(IncidentInvalid) as refused:
        incident_mark_serious(
            incident_id=incident.pk, basis="catastrophic", actor=lead, aware_at=T0 + timedelta(minutes=1)
        )

    assert set(refused.value.fields) == {"regulatory_basis", "aware_at"}


def test_changing_the_basis_recomputes_the_deadline_from_the_first_awareness(incident, lead, frozen_clock):
    incident_mark_serious(incident_id=incident.pk, basis=RegulatoryBasis.STANDARD, actor=lead)
    frozen_clock.move_to(T0 + timedelta(days=1))

    changed = incident_mark_serious(incident_id=incident.pk, basis=RegulatoryBasis.DEATH, actor=lead)

    assert changed.regulatory_basis == RegulatoryBasis.DEATH
    assert changed.regulatory_deadline_at == T0 + timedelta(days=10)
    entries = AuditLog.objects.filter(action=AuditAction.INCIDENT_MARKED_SERIOUS).order_by("seq")
    assert [(e.data["previous_basis"], e.data["basis"]) for e in entries] == [("", "standard"), ("standard", "death")]


def test_marking_again_with_nothing_changed_writes_nothing(incident, lead, frozen_clock):
    incident_mark_serious(incident_id=incident.pk, basis=RegulatoryBasis.WIDESPREAD, actor=lead)
    frozen_clock.move_to(T0 + timedelta(hours=5))

    again = incident_mark_serious(incident_id=incident.pk, basis=RegulatoryBasis.WIDESPREAD, actor=lead)

    assert again.regulatory_deadline_at == T0 + timedelta(days=2)
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_MARKED_SERIOUS).count() == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    basis=st.sampled_from(RegulatoryBasis.values),
    aware_at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
)
def test_every_deadline_is_awareness_plus_the_days_of_its_basis(basis, aware_at):
    days = {"standard": 15, "widespread": 2, "death": 10}[basis]

    assert regulatory_deadline(basis=basis, aware_at=aware_at) - aware_at == timedelta(days=days)


# --- reporting --------------------------------------------------------------------------------------
def test_marking_reported_records_when_and_the_authoritys_reference(incident, lead, frozen_clock):
    incident_mark_serious(incident_id=incident.pk, basis=RegulatoryBasis.STANDARD, actor=lead)
    frozen_clock.move_to(T0 + timedelta(days=4))

    reported = incident_mark_reported(incident_id=incident.pk, actor=lead, reference="MSA-2026-0042")

    assert reported.regulatory_reported_at == T0 + timedelta(days=4)
    entry = AuditLog.objects.get(action=AuditAction.INCIDENT_REPORTED, object_id=str(incident.pk))
    assert entry.data["reference"] == "MSA-2026-0042"
    assert entry.data["on_time"] is True
    event = IncidentEvent.objects.filter(incident=incident, kind=IncidentEventKind.REGULATORY).latest("at")
    assert event.data["action"] == "reported"
    assert "MSA-2026-0042" in event.message


def test_an_incident_not_marked_serious_cannot_be_reported(incident, lead):
    with pytest.raises(IncidentInvalid) as refused:
        incident_mark_reported(incident_id=incident.pk, actor=lead, reference="MSA-1")

    assert list(refused.value.fields) == ["serious"]


def test_reporting_twice_conflicts_and_keeps_the_first_filing(incident, lead, frozen_clock):
    incident_mark_serious(incident_id=incident.pk, basis=RegulatoryBasis.STANDARD, actor=lead)
    incident_mark_reported(incident_id=incident.pk, actor=lead, reference="MSA-1")
    frozen_clock.move_to(T0 + timedelta(days=1))

    with pytest.raises(IncidentTransitionError):
        incident_mark_reported(incident_id=incident.pk, actor=lead, reference="MSA-2")

    incident.refresh_from_db()
    assert incident.regulatory_reported_at == T0
    assert AuditLog.objects.filter(action=AuditAction.INCIDENT_REPORTED).count() == 1


blank = st.text(alphabet=" \t\n\r", max_size=5)
overlong = st.text(alphabet=st.characters(blacklist_categories=["Z", "C"]), min_size=REFERENCE_MAX_LENGTH + 1)
with_nul = st.tuples(st.text(max_size=20), st.text(max_size=20)).map(lambda parts: f"MSA{parts[0]}\x00{parts[1]}")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reference=st.one_of(blank, overlong, with_nul))
def test_a_blank_overlong_or_unstorable_reference_is_refused_by_name(incident, lead, reference):
    with pytest.raises(IncidentInvalid) as refused:
        incident_mark_reported(incident_id=incident.pk, actor=lead, reference=reference)

    assert list(refused.value.fields) == ["reference"]


# --- countdown --------------------------------------------------------------------------------------
def test_the_countdown_runs_down_and_turns_overdue_after_the_deadline(incident, lead):
    marked = incident_mark_serious(incident_id=incident.pk, basis=RegulatoryBasis.WIDESPREAD, actor=lead)

    day_one = regulatory_countdown(marked, now=T0 + timedelta(days=1))
    day_three = regulatory_countdown(marked, now=T0 + timedelta(days=3))

    assert day_one["deadline_at"] == T0 + timedelta(days=2)
    assert (day_one["remaining_seconds"], day_one["overdue"]) == (DAY, False)
    assert (day_three["remaining_seconds"], day_three["overdue"]) == (-DAY, True)
    assert day_one["basis"] == "widespread"
    assert day_one["reported_at"] is None


def test_the_countdown_uses_the_clock_when_no_time_is_given(incident, lead, frozen_clock):
    marked = incident_mark_serious(incident_id=incident.pk, basis=RegulatoryBasis.WIDESPREAD, actor=lead)
    frozen_clock.move_to(T0 + timedelta(days=2, seconds=1))

    assert regulatory_countdown(marked)["overdue"] is True


def test_a_report_filed_late_stays_overdue_and_one_filed_in_time_never_turns_overdue(incident, lead, frozen_clock):
    incident_mark_serious(incident_id=incident.pk, basis=RegulatoryBasis.WIDESPREAD, actor=lead)
    frozen_clock.move_to(T0 + timedelta(days=3))
    late = incident_mark_reported(incident_id=incident.pk, actor=lead, reference="MSA-9")
    on_time = IncidentFactory(system=incident.system)
    incident_mark_serious(
        incident_id=on_time.pk, basis=RegulatoryBasis.WIDESPREAD, actor=lead, aware_at=T0 + timedelta(days=2)
    )
    on_time = incident_mark_reported(incident_id=on_time.pk, actor=lead, reference="MSA-10")

    assert regulatory_countdown(late, now=T0 + timedelta(days=30))["overdue"] is True
    assert regulatory_countdown(on_time, now=T0 + timedelta(days=30))["overdue"] is False
    assert AuditLog.objects.get(action=AuditAction.INCIDENT_REPORTED, object_id=str(late.pk)).data["on_time"] is False


def test_an_incident_not_marked_serious_has_no_countdown(incident):
    assert regulatory_countdown(incident, now=T0) is None


# --- the report -------------------------------------------------------------------------------------
@pytest.fixture
def reported_incident(high_risk_system, lead, frozen_clock):
    alert = AlertFactory(system=high_risk_system, first_event_at=T0 - timedelta(hours=6))
    incident = IncidentFactory(
        system=high_risk_system,
        source_alert=alert,
        title="[high] threshold:fairness: dp_gap on credit-scoring",
        description="Approval gap between groups exceeded the critical level.",
    )
    incident_links_on_open(incidents=[incident])
    incident_rca_update(
        incident_id=incident.pk,
        values={
            "root_cause": "A feature pipeline dropped the income normalisation.",
            "impact": "Applicants over 60 were declined more often for 3 days.",
            "affected_data": "312 credit applications",
            "corrective_actions": "Restored normalisation; added a drift check.",
        },
        actor=lead,
    )
    incident_mark_serious(
        incident_id=incident.pk, basis=RegulatoryBasis.STANDARD, actor=lead, aware_at=T0 - timedelta(hours=1)
    )
    frozen_clock.move_to(T0 + timedelta(days=1))
    return incident_mark_reported(incident_id=incident.pk, actor=lead, reference="MSA-2026-0042"), alert


def test_the_report_carries_the_art_73_fields(reported_incident, team, high_risk_system):
    incident, alert = reported_incident

    report = incident_report(incident=incident, now=T0 + timedelta(days=2))

    assert report["generated_at"] == (T0 + timedelta(days=2)).isoformat()
    assert report["provider"]["name"] == team.name
    assert report["ai_system"] == {
        "id": str(high_risk_system.pk),
        "name": "credit-scoring",
        "risk_class": "high",
        "risk_class_label": "High-risk (Art. 6)",
        "entity_type": high_risk_system.entity_type,
    }
    assert report["incident"]["id"] == str(incident.pk)
    assert report["incident"]["title"] == incident.title
    assert report["incident"]["type"] == incident.incident_type
    assert report["incident"]["severity"] == "high"
    assert report["incident"]["status"] == "open"
    assert report["occurred_at"] == (T0 - timedelta(hours=6)).isoformat()  # the alert's first event
    assert report["aware_at"] == (T0 - timedelta(hours=1)).isoformat()
    assert report["serious"] is True
    assert report["regulatory"]["basis"] == "standard"
    assert report["regulatory"]["deadline_at"] == (T0 - timedelta(hours=1) + timedelta(days=15)).isoformat()
    assert report["regulatory"]["reported_at"] == (T0 + timedelta(days=1)).isoformat()
    assert report["regulatory"]["reference"] == "MSA-2026-0042"
    assert report["regulatory"]["overdue"] is False
    assert report["description"] == "Approval gap between groups exceeded the critical level."
    assert report["impact"].startswith("Applicants over 60")
    assert report["root_cause"].startswith("A feature pipeline")
    assert report["corrective_actions"].startswith("Restored normalisation")
    assert report["affected_persons"] == "312 credit applications"
    assert report["rca"]["missing_fields"] == []
    kinds = [entry["kind"] for entry in report["timeline"]]
    assert kinds == [IncidentEventKind.RCA_UPDATED, IncidentEventKind.REGULATORY, IncidentEventKind.REGULATORY]
    assert set(report["timeline"][0]) == {"kind", "at", "actor", "message"}
    assert {"type": "alert", "id": str(alert.pk), "relation": "triggered_by",
            "label": "alert threshold:data_quality on credit-scoring"} in report["links"]  # fmt: skip
    assert json.loads(json.dumps(report)) == report  # JSON-ready as it is


def test_an_incident_without_alerts_occurred_when_it_opened(incident):
    report = incident_report(incident=incident, now=T0)

    assert report["occurred_at"] == incident.opened_at.isoformat()
    assert report["aware_at"] == incident.opened_at.isoformat()
    assert report["serious"] is False
    assert report["regulatory"]["deadline_at"] is None


def test_the_report_names_no_incident_of_another_team(incident, foreign_system, team):
    foreign = IncidentFactory(system=foreign_system)
    own = IncidentFactory(system=AISystemFactory(team=team))
    for other in (foreign, own):
        IncidentLink.objects.create(
            incident=incident, target_type=LinkTarget.INCIDENT, target_id=str(other.pk),
            relation=LinkRelation.SIMILAR_TO, label=f"incident {other.title}",
        )  # fmt: skip

    linked = {link["id"] for link in incident_report(incident=incident, now=T0)["links"]}

    assert str(own.pk) in linked
    assert str(foreign.pk) not in linked


def test_the_html_report_escapes_what_people_typed(high_risk_system, lead):
    incident = IncidentFactory(
        system=high_risk_system,
        title='<script>alert("t")</script> drift',
        description="Line one\n<b>bold?</b>",
    )
    incident_rca_update(incident_id=incident.pk, values={"root_cause": '<img src=x onerror="steal()">'}, actor=lead)

    html = incident_report_html(incident_report(incident=incident, now=T0))

    assert "<script" not in html
    assert "&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt; drift" in html
    assert "<img" not in html
    assert "&lt;img src=x onerror=&quot;steal()&quot;&gt;" in html
    assert "Line one<br>&lt;b&gt;bold?&lt;/b&gt;" in html


def test_the_html_report_is_a_self_contained_page_with_the_report_fields(reported_incident):
    incident, _ = reported_incident

    html = incident_report_html(incident_report(incident=incident, now=T0 + timedelta(days=2)))

    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert "MSA-2026-0042" in html
    assert "credit-scoring" in html
    assert "High-risk (Art. 6)" in html
    assert "Serious incident (Art. 73(2): 15 days)" in html
    assert "@media print" in html
    for external in ("<link", "<script", "src=", "http://", "https://"):
        assert external not in html
