"""Every admin page of every registered model renders for a superuser (no template or query errors)."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from config import registry
from governance.services.audit import audit_chain_verify_and_record
from tasks import metrics
from tasks.tasks import canary
from tests.factories import (
    ControlAssessmentFactory,
    EvaluationRunFactory,
    PredictiveGovernanceFactory,
    PredictorModelFactory,
)

REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)


@pytest.fixture
def estate(db):
    """At least one row in every registered table."""
    ControlAssessmentFactory()
    EvaluationRunFactory()
    PredictiveGovernanceFactory(model=PredictorModelFactory(), outcome="occurred")
    registry.set("oversight.correlation_window_seconds", 600, user=None, reason="admin page test")
    audit_chain_verify_and_record()
    canary.delay()
    metrics.flush()


@pytest.mark.django_db
@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label_lower)
def test_changelist_and_change_pages_render(client, django_user_model, estate, model):
    superuser = django_user_model.objects.create_superuser("root", "root@example.com", "x" * 20)
    client.force_login(superuser)
    opts = model._meta

    changelist = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert changelist.status_code == 200

    obj = model._default_manager.first()
    if obj is not None:
        change = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
        assert change.status_code == 200


@pytest.mark.django_db
def test_admin_index_renders_the_scorecard_for_a_superuser(client, django_user_model, estate):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "x" * 20))

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert b'id="vigil-kpis"' in response.content
    assert b'data-kpi="config_centralization"' in response.content
    assert b'id="vigil-predicted-risk"' in response.content
