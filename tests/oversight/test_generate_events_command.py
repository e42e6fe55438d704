"""``manage.py generate_events``: local ingest (fleet, labels, processing, deactivation), real-time
pacing, and the API client against a live server (fleet creation, labels file, clear 400s, retries)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO
from unittest import mock

import pytest
import requests
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework_simplejwt.tokens import RefreshToken

from governance.choices import Role
from governance.models import AISystem
from oversight.generator import EVENT_ID_NAMESPACE
from oversight.management.commands import generate_events
from oversight.models import Alert, EventRaw, IngestBatch, ScenarioLabel
from tests.factories import AISystemFactory, TeamFactory, UserFactory

NOON = datetime(2025, 5, 6, 12, 0, tzinfo=UTC)


def generate(*args: str) -> str:
    out = StringIO()
    call_command("generate_events", "--no-progress", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def fleet(prefix: str = "synth-seed-3-"):
    return AISystem.objects.filter(name__startswith=prefix)


# --- local runs --------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_local_run_ingests_processes_labels_and_then_deactivates_its_fleet():
    output = generate("--count", "600", "--seed", "3", "--batch-size", "200")

    assert set(EventRaw.objects.values_list("event_id", flat=True)) == {
        uuid.uuid5(EVENT_ID_NAMESPACE, f"seed:3:{index}") for index in range(600)
    }
    assert IngestBatch.objects.count() == 3
    assert not IngestBatch.objects.filter(processed_at__isnull=True).exists()
    assert ScenarioLabel.objects.count() == 6
    assert set(ScenarioLabel.objects.values_list("system__name", flat=True)) <= set(
        fleet().values_list("name", flat=True)
    )
    assert fleet().count() == 20 and not fleet().filter(is_active=True).exists()
    expected = {(label.system_id, label.expected_rule) for label in ScenarioLabel.objects.exclude(expected_rule="")}
    assert {(alert.system_id, alert.rule.name) for alert in Alert.objects.filter(detected_at__isnull=False)} == expected
    assert "events sent: 600 in 3 batches (accepted 600, duplicates 0)" in output
    assert "scenarios: 6 (" in output
    assert "fleet: 20 systems deactivated" in output


@pytest.mark.django_db
def test_a_run_whose_batches_are_not_processed_in_time_says_so_and_still_deactivates_its_fleet():
    # No commit in this test, so nothing is processed: the run must not wait past --wait.
    output = generate("--count", "300", "--seed", "3", "--batch-size", "100", "--wait", "0")

    assert "fleet: 20 systems deactivated; 3 batches still unprocessed after 0 s" in output
    assert not fleet().filter(is_active=True).exists()


@pytest.mark.django_db
def test_a_second_run_with_the_same_seed_stores_nothing_new():
    generate("--count", "300", "--seed", "3", "--batch-size", "100", "--wait", "0")
    labels = ScenarioLabel.objects.count()

    output = generate("--count", "300", "--seed", "3", "--batch-size", "100", "--wait", "0")

    assert "accepted 0, duplicates 300" in output
    assert EventRaw.objects.count() == 300
    assert ScenarioLabel.objects.count() == labels


@pytest.mark.django_db
def test_a_backdated_run_ends_before_now_at_one_event_per_second():
    with time_machine.travel(NOON, tick=False):
        generate("--count", "300", "--seed", "3", "--batch-size", "300", "--wait", "0")

    times = sorted(EventRaw.objects.values_list("occurred_at", flat=True))
    assert times[0] == NOON - timedelta(seconds=300)
    assert times[-1] == NOON - timedelta(seconds=1)


@pytest.mark.django_db
def test_a_real_time_run_never_sends_an_event_before_its_time():
    sends = []
    real_ingest = generate_events.ingest_events

    def recording_ingest(*, items, submitted_by):
        sends.append((timezone.now(), max(datetime.fromisoformat(item["occurred_at"]) for item in items)))
        return real_ingest(items=items, submitted_by=submitted_by)

    with (
        time_machine.travel(NOON, tick=False) as traveller,
        mock.patch.object(generate_events, "pause", side_effect=lambda seconds: traveller.shift(seconds)) as pause,
        mock.patch.object(generate_events, "ingest_events", side_effect=recording_ingest),
    ):
        generate("--count", "300", "--seed", "3", "--rate", "100", "--batch-size", "100", "--wait", "0")

    assert len(sends) == 3
    assert all(latest <= sent_at for sent_at, latest in sends)
    assert min(EventRaw.objects.values_list("occurred_at", flat=True)) == NOON
    assert sum(call.args[0] for call in pause.call_args_list) == pytest.approx(2.99)


@pytest.mark.django_db
def test_team_option_puts_the_fleet_in_that_team(tmp_path):
    team = TeamFactory(slug="load-tests")

    generate("--count", "200", "--seed", "3", "--team", "load-tests", "--wait", "0")

    assert set(fleet().values_list("team", flat=True)) == {team.pk}


@pytest.mark.django_db
def test_labels_out_writes_the_scenarios_as_json(tmp_path):
    path = tmp_path / "labels.json"

    generate("--count", "500", "--seed", "3", "--namespace", "drill:1", "--labels-out", str(path), "--wait", "0")

    document = json.loads(path.read_text())
    assert (document["namespace"], document["seed"], document["count"]) == ("drill:1", 3, 500)
    assert len(document["scenarios"]) == 5
    assert {s["scenario_id"] for s in document["scenarios"]} == set(
        ScenarioLabel.objects.values_list("scenario_id", flat=True)
    )
    assert all(s["system"].startswith("synth-drill-1-") for s in document["scenarios"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--batch-size", "5001"), "--batch-size must be between 1 and 5000"),
        (("--count", "0"), "--count must be at least 1"),
        (("--rate", "0"), "--rate must be a positive number"),
        (("--api", "http://vigil.example"), "--api and --token go together"),
        (("--team", "no-such-team"), "no team 'no-such-team'"),
    ],
)
@pytest.mark.django_db
def test_bad_options_fail_with_a_clear_message(args, message):
    with pytest.raises(CommandError, match=message):
        generate(*args)


@pytest.mark.django_db
def test_a_fleet_name_taken_by_a_real_system_fails_the_run_before_sending():
    AISystemFactory(name="synth-seed-3-0007")

    with pytest.raises(CommandError, match="non-synthetic AI systems: synth-seed-3-0007"):
        generate("--count", "100", "--seed", "3")

    assert not EventRaw.objects.exists()


# --- through the API -------------------------------------------------------------------------------
def access_token(user) -> str:
    return str(RefreshToken.for_user(user).access_token)


@pytest.fixture
def lead_token(team):
    return access_token(UserFactory(roles=[Role.GOVERNANCE_LEAD], teams=[team]))


def test_an_api_run_creates_the_remote_fleet_and_writes_the_labels_file(live_server, team, lead_token, tmp_path):
    path = tmp_path / "labels.json"
    api = ("--api", live_server.url, "--token", lead_token, "--team", team.slug)

    output = generate(*api, "--count", "300", "--seed", "5", "--batch-size", "100", "--labels-out", str(path))

    assert EventRaw.objects.count() == 300
    assert fleet("synth-seed-5-").filter(team=team, is_active=True).count() == 20  # remote fleet left active
    assert not ScenarioLabel.objects.exists()  # the remote database is not ours: labels go to the file
    assert len(json.loads(path.read_text())["scenarios"]) == 3
    assert "fleet: 20 of 20 systems created on the server" in output
    assert "events sent: 300 in 3 batches (accepted 300, duplicates 0)" in output

    again = generate(*api, "--count", "300", "--seed", "5", "--batch-size", "300")

    assert "fleet: all 20 systems exist on the server" in again
    assert "accepted 0, duplicates 300" in again


def test_an_api_run_reports_the_field_errors_of_a_refused_batch(live_server, team):
    """An ingest service account may neither list nor create systems: with no fleet on the server the
    first batch is refused, and the run fails naming the bad fields."""
    token = access_token(UserFactory(roles=[Role.INGEST], teams=[team], is_service_account=True))

    # ``match`` rather than keeping the ExceptionInfo: its traceback would keep the client's keep-alive
    # socket open, and with it a live-server thread on the shared in-memory SQLite connection.
    with pytest.raises(CommandError, match=r"HTTP 400 [^\n]*\n  events\.0\.system: unknown AI system 'synth-seed-5-"):
        generate("--api", live_server.url, "--token", token, "--count", "50", "--seed", "5")

    assert not EventRaw.objects.exists()


def response(status: int, body: dict | None = None, **headers: str) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer._content = json.dumps(body or {}).encode()
    answer.headers.update(headers)
    return answer


@pytest.fixture
def api_target():
    return generate_events.ApiTarget(url="http://vigil.example/", token="t", team_ref=None, write=print)


def test_the_api_client_honours_retry_after_on_429(api_target):
    answers = [response(429, **{"Retry-After": "7"}), response(202, {"accepted": 1, "duplicates": 0})]
    with (
        mock.patch.object(api_target.session, "request", side_effect=answers) as sent,
        mock.patch.object(generate_events, "pause") as pause,
    ):
        assert api_target.send([{"x": 1}]) == (1, 0)

    pause.assert_called_once_with(7.0)
    assert sent.call_args.args == ("POST", "http://vigil.example/api/v1/events")
    assert sent.call_args.kwargs["json"] == {"events": [{"x": 1}]}


def test_the_api_client_backs_off_exponentially_on_server_errors(api_target):
    answers = [response(503), response(502), response(202, {"accepted": 0, "duplicates": 1})]
    with (
        mock.patch.object(api_target.session, "request", side_effect=answers),
        mock.patch.object(generate_events, "pause") as pause,
    ):
        assert api_target.send([{}]) == (0, 1)

    assert [call.args[0] for call in pause.call_args_list] == [0.5, 1.0]


def test_the_api_client_gives_up_after_repeated_failures(api_target):
    answers = [requests.ConnectionError("refused")] * generate_events.MAX_ATTEMPTS
    with (
        mock.patch.object(api_target.session, "request", side_effect=answers),
        mock.patch.object(generate_events, "pause"),
        pytest.raises(CommandError, match="failed 6 times; last: network error: refused"),
    ):
        api_target.send([{}])


def test_the_api_client_sends_the_bearer_token(api_target):
    assert api_target.session.headers["Authorization"] == "Bearer t"


def test_retry_after_reads_seconds_and_http_dates():
    with time_machine.travel(NOON, tick=False):
        assert generate_events.ApiTarget.retry_after(response(429, **{"Retry-After": "2.5"})) == 2.5
        in_ten = response(429, **{"Retry-After": "Tue, 06 May 2025 12:00:10 GMT"})
        assert generate_events.ApiTarget.retry_after(in_ten) == 10.0
        assert generate_events.ApiTarget.retry_after(response(429, **{"Retry-After": "soon"})) is None
