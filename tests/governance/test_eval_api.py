"""``POST /eval/{suite}/run``: declared suites run through a local fake upstream, scored, recorded as an
``EvaluationRun`` and audited; unknown suites, invalid datasets, upstream failures, scoping and roles."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.choices import AuditAction, Role
from governance.models import AuditLog, EvaluationRun
from governance.services.gateway import (
    EVALUATION_SUITES,
    EvaluationInvalid,
    _matches_expected,
    evaluation_dataset_clean,
)
from tests.governance.test_gateway_api import chat_answer, serve_fake_upstream

pytestmark = pytest.mark.django_db

KNOWN_ANSWERS = {
    "17 + 25": "42",
    "capital of france": "Paris.",
    "leap year": "A leap year has 366 days.",
    "chemical symbol for gold": "Au",
    "closest to the sun": "Mercury",
}


def knowledgeable(prompt: str) -> str:
    lowered = prompt.lower()
    return next((answer for key, answer in KNOWN_ANSWERS.items() if key in lowered), "I do not know.")


def model(answer_for):
    """A fake upstream responder answering each prompt with ``answer_for(prompt)``."""

    def respond(body):
        return 200, chat_answer(answer_for(body["messages"][-1]["content"]), prompt_tokens=5, completion_tokens=2), 0

    return respond


def run_url(suite: str) -> str:
    return f"/api/v1/eval/{suite}/run"


@pytest.fixture
def upstream(settings):
    yield from serve_fake_upstream(settings)


@pytest.fixture
def evaluator(make_user, team):
    return make_user(Role.CICD, teams=[team], username="svc-ci", is_service_account=True)


def eval_audits():
    return list(AuditLog.objects.filter(action=AuditAction.EVAL_RUN).order_by("seq"))


def test_accuracy_run_scores_every_case_records_a_passing_run_and_audits_it(
    upstream, evaluator, own_system, client_for
):
    upstream.respond = model(knowledgeable)

    response = client_for(evaluator).post(run_url("accuracy"), {"system": own_system.name})

    assert response.status_code == 201, response.json()
    answer = response.json()
    assert (answer["suite"], answer["metric"], answer["value"]) == ("accuracy", "exact_match", 1.0)
    assert (answer["threshold"], answer["passed"], answer["triggered_by"]) == (0.8, True, "svc-ci")
    assert answer["gateway"]["calls"] == 5
    assert answer["details"]["passed_cases"] == 5
    assert answer["details"]["total_tokens"] == 35
    run = EvaluationRun.objects.get(pk=answer["id"])
    assert run.system == own_system
    assert len(upstream.requests) == 5
    assert all(r["body"]["temperature"] == 0 for r in upstream.requests)
    assert all(r["headers"]["Authorization"] == "Bearer sk-gateway-test" for r in upstream.requests)
    [entry] = eval_audits()
    assert entry.data["evaluation_run"] == str(run.pk)
    assert entry.data["caller"] == "svc-ci"
    assert entry.data["endpoint"] == run_url("accuracy")
    assert (entry.data["outcome"], entry.data["value"], entry.data["passed"]) == ("ok", 1, True)
    assert entry.data["model"] == "fake-gpt"
    assert "capital" not in json.dumps(entry.data)  # metadata only
    assert AuditLog.objects.filter(action=AuditAction.EVALUATION_RECORDED, object_id=str(run.pk)).exists()


def test_accuracy_run_fails_below_the_threshold(upstream, evaluator, own_system, client_for):
    upstream.respond = model(
        lambda prompt: "I do not know." if "gold" in prompt or "Sun" in prompt else knowledgeable(prompt)
    )

    answer = client_for(evaluator).post(run_url("accuracy"), {"system": own_system.name}).json()

    assert (answer["value"], answer["passed"]) == (0.6, False)
    assert [c["passed"] for c in answer["details"]["case_results"]] == [True, True, True, False, False]


def test_robustness_run_asks_every_rewording_and_fails_a_model_that_breaks_on_shouting(
    upstream, evaluator, own_system, client_for
):
    upstream.respond = model(lambda prompt: "WHAT?" if prompt.isupper() else knowledgeable(prompt))

    answer = client_for(evaluator).post(run_url("robustness"), {"system": own_system.name}).json()

    assert answer["metric"] == "consistency"
    # Each case stops at its first wrong rewording: the original, then the shouted one.
    assert answer["gateway"]["calls"] == 3 * 2
    assert (answer["value"], answer["passed"]) == (0.0, False)


def test_toxicity_run_counts_abusive_answers(upstream, evaluator, own_system, client_for):
    upstream.respond = model(lambda prompt: "You idiot!" if "queue" in prompt else "Let us stay calm and kind.")

    answer = client_for(evaluator).post(run_url("toxicity"), {"system": own_system.name}).json()

    assert (answer["metric"], answer["value"], answer["threshold"], answer["passed"]) == (
        "non_toxic_rate",
        0.75,
        0.95,
        False,
    )


def test_fairness_run_fails_a_model_whose_decision_depends_on_the_group(upstream, evaluator, own_system, client_for):
    upstream.respond = model(lambda prompt: "No." if "a woman" in prompt and "loan" in prompt else "Yes.")

    answer = client_for(evaluator).post(run_url("fairness"), {"system": own_system.name}).json()

    assert (answer["metric"], answer["value"], answer["passed"]) == ("parity_rate", 0.5, False)
    # The loan case stops after its first (failing) pair; the nurse case asks both pairs.
    assert answer["gateway"]["calls"] == 2 + 2 * 2


def test_a_custom_dataset_and_threshold_replace_the_built_in_ones(upstream, evaluator, own_system, client_for):
    upstream.respond = model(lambda prompt: "Blue" if "sky" in prompt else "Green")
    dataset = [
        {"prompt": "What colour is a clear sky?", "expected": "blue"},
        {"prompt": "What colour is snow?", "expected": "white"},
    ]

    answer = (
        client_for(evaluator)
        .post(run_url("accuracy"), {"system": str(own_system.pk), "dataset": dataset, "threshold": 0.5})
        .json()
    )

    assert (answer["value"], answer["threshold"], answer["passed"]) == (0.5, 0.5, True)
    assert answer["details"]["custom_dataset"] is True
    assert [r["body"]["messages"][0]["content"] for r in upstream.requests] == [c["prompt"] for c in dataset]


@pytest.mark.parametrize(
    ("suite", "extra", "field"),
    [
        ("accuracy", {"dataset": [{"prompt": "a", "expected": "b"}, {"prompt": "c"}]}, "dataset.1.expected"),
        ("accuracy", {"dataset": []}, "dataset"),
        ("accuracy", {"dataset": [{"prompt": "q", "expected": "a"}] * 51}, "dataset"),
        ("fairness", {"dataset": [{"prompt": "Approve this applicant?"}]}, "dataset.0.prompt"),
        ("fairness", {"dataset": [{"prompt": "Approve {group}?", "groups": ["only one"]}]}, "dataset.0.groups"),
        ("accuracy", {"metric": "bleu"}, "metric"),
        ("accuracy", {"threshold": 1.5}, "threshold"),
        ("accuracy", {"threshold": "high"}, "threshold"),
    ],
)
def test_invalid_requests_answer_400_naming_the_field_and_send_nothing(
    upstream, evaluator, own_system, client_for, suite, extra, field
):
    response = client_for(evaluator).post(run_url(suite), {"system": own_system.name, **extra})

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert upstream.requests == []
    assert not EvaluationRun.objects.exists()


def test_an_unknown_suite_answers_404_and_sends_nothing(upstream, evaluator, own_system, client_for):
    response = client_for(evaluator).post(run_url("vibes"), {"system": own_system.name})

    assert response.status_code == 404
    assert "accuracy, fairness, robustness, toxicity" in response.json()["error"]["message"]
    assert upstream.requests == []


def test_without_an_upstream_it_answers_503_and_records_nothing(evaluator, own_system, client_for, settings):
    settings.VIGIL_GATEWAY_UPSTREAM_URL = ""

    response = client_for(evaluator).post(run_url("accuracy"), {"system": own_system.name})

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_not_configured"
    assert not EvaluationRun.objects.exists()
    assert not AuditLog.objects.filter(action__in=[AuditAction.EVAL_RUN, AuditAction.EVALUATION_RECORDED]).exists()


def test_an_upstream_failure_mid_run_answers_502_records_no_run_and_audits_the_attempt(
    upstream, evaluator, own_system, client_for
):
    def respond(body):
        prompt = body["messages"][0]["content"]
        return (500, {"error": "boom"}, 0) if "leap year" in prompt else (200, chat_answer(knowledgeable(prompt)), 0)

    upstream.respond = respond

    response = client_for(evaluator).post(run_url("accuracy"), {"system": own_system.name})

    assert response.status_code == 502
    assert not EvaluationRun.objects.exists()
    [entry] = eval_audits()
    assert (entry.data["outcome"], entry.data["upstream_status"], entry.data["calls"]) == ("upstream_error", 500, 3)


def test_an_upstream_timeout_answers_504(upstream, evaluator, own_system, client_for, settings):
    settings.VIGIL_GATEWAY_TIMEOUT = 0.2
    upstream.respond = lambda body: (200, chat_answer("42"), 1.0)

    response = client_for(evaluator).post(run_url("accuracy"), {"system": own_system.name})

    assert response.status_code == 504
    assert not EvaluationRun.objects.exists()


def test_a_system_outside_the_callers_teams_answers_404(upstream, evaluator, foreign_system, client_for):
    response = client_for(evaluator).post(run_url("accuracy"), {"system": foreign_system.name})

    assert response.status_code == 404
    assert upstream.requests == []


def test_viewers_may_not_run_evaluations_but_leads_may(upstream, viewer, lead, own_system, client_for):
    upstream.respond = model(knowledgeable)

    assert client_for(viewer).post(run_url("accuracy"), {"system": own_system.name}).status_code == 403
    assert client_for(lead).post(run_url("accuracy"), {"system": own_system.name}).status_code == 201


_text = st.text(min_size=1, max_size=40).filter(str.strip)


@given(cases=st.lists(st.fixed_dictionaries({"prompt": _text, "expected": _text}), min_size=1, max_size=50))
def test_dataset_validation_accepts_any_well_formed_accuracy_cases(cases):
    assert evaluation_dataset_clean(suite=EVALUATION_SUITES["accuracy"], dataset=cases) == cases


@given(
    cases=st.lists(st.fixed_dictionaries({"prompt": _text, "expected": _text}), min_size=1, max_size=20),
    data=st.data(),
)
def test_dataset_validation_names_the_case_missing_its_expected_answer(cases, data):
    broken = data.draw(st.integers(min_value=0, max_value=len(cases) - 1))
    cases[broken] = {"prompt": cases[broken]["prompt"]}

    with pytest.raises(EvaluationInvalid) as caught:
        evaluation_dataset_clean(suite=EVALUATION_SUITES["accuracy"], dataset=cases)

    assert list(caught.value.fields) == [f"dataset.{broken}.expected"]


@given(
    before=st.text(alphabet="abc xyz.,!", max_size=20),
    expected=st.from_regex(r"[0-9]{1,8}( [0-9]{1,8}){0,2}", fullmatch=True),
    after=st.text(alphabet="abc xyz.,!", max_size=20),
)
def test_an_expected_answer_matches_only_as_whole_words(before, expected, after):
    assert _matches_expected(f"{before} {expected}. {after}", expected)
    assert not _matches_expected(f"{before} x{expected}x {after}", expected)
