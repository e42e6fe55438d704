"""manage.py assist_eval: agreement with held-out human decisions, ECE and the reliability table."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from hitl.services.backlog_seed import backlog_seed

pytestmark = pytest.mark.django_db


def run_eval(*args: str) -> str:
    out = StringIO()
    call_command("assist_eval", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def seeded_history():
    backlog_seed(pending=0, history=1500, seed=42)


def test_on_a_seeded_history_the_model_agrees_with_people_and_is_calibrated(seeded_history):
    report = json.loads(run_eval("--json"))

    assert report["n_holdout"] == 300
    assert report["n_train"] == 1200
    assert report["agreement"] >= 0.90
    assert report["ece"] <= 0.05
    assert sum(row["count"] for row in report["reliability"]) == 300
    assert sum(c["human"] for c in report["per_class"].values()) == 300
    assert set(report["per_class"]) == {"approve", "reject", "escalate"}


def test_the_text_report_shows_agreement_ece_and_the_reliability_table(seeded_history):
    output = run_eval()

    assert "agreement with people:" in output
    assert "expected calibration error (ECE):" in output
    assert "confidence  items  mean confidence  agreement" in output
    assert "0.9–1.0" in output


def test_without_enough_human_decisions_the_command_fails_and_says_why():
    backlog_seed(pending=0, history=30, seed=1)

    with pytest.raises(CommandError, match="at least 100 are needed"):
        run_eval()
