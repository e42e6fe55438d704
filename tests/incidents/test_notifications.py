"""Notification targets, delivery by email and signed webhook, and the refusal of non-public targets."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from celery.exceptions import Retry
from django.core import mail
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from config import registry
from governance.choices import Role, Severity
from incidents.models import IncidentEvent, IncidentEventKind, Notification, NotificationStatus
from incidents.services.notifications import (
    CHANNEL_SENDERS,
    NotificationTransientError,
    _Attempt,
    dedupe_key,
    notification_build,
    notification_deliver,
    notification_targets,
    notifications_deliver,
    notifications_pending,
    notifications_store,
    webhook_url_check,
)
from incidents.tasks import deliver_notification, deliver_notifications
from tests.incidents.factories import IncidentFactory

SECRET = "test-webhook-secret"
OPEN_CONFIG = {"webhook_urls": [], "allow_private_targets": False, "allowed_hosts": [], "timeout_seconds": 5}


# --- a local receiver ------------------------------------------------------------------------------
class Receiver:
    """An HTTP server on 127.0.0.1 that records every request and answers with ``status``."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 204
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body, "path": self.path})
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/vigil"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def webhook_secret(settings):
    settings.VIGIL_WEBHOOK_SECRET = SECRET
    return SECRET


def configure_notifications(**changes):
    registry.set("incidents.notifications", {**OPEN_CONFIG, **changes}, user="system:test", reason="test")


def notification(incident, *, channel="email", target="lena@example.com", kind="escalation") -> Notification:
    fields = notification_build(
        incident_id=incident.pk,
        channel=channel,
        target=target,
        kind=kind,
        subject=f"[high] Incident escalated to level 1: {incident.title}",
        payload={"event": "incident.escalated", "message": "Escalated to level 1.", "level": 1,
                 "incident": {"id": str(incident.pk), "title": incident.title, "severity": incident.severity}},
        key=dedupe_key(f"escalation:{incident.pk}:1", channel, target),
    )  # fmt: skip
    return Notification.objects.create(**fields)


# --- targets ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_targets_resolve_assignee_team_roles_and_users_to_unique_email_addresses(
    own_system, team, lead, make_user, admin_user
):
    rita = make_user(Role.REVIEWER, teams=[team], username="rita")
    outsider = make_user(Role.REVIEWER, username="otto")
    make_user(Role.REVIEWER, teams=[team], username="gone", is_active=False)
    team.email = "fraud-ml@example.com"
    team.save()
    incident = IncidentFactory(system=own_system, assignee=rita)
    step = {"notify": ["assignee", "team", "role:governance_lead", "role:admin", "user:otto"], "channels": ["email"]}

    targets = notification_targets(incident, step)

    assert targets == [
        ("email", "rita@example.com"),
        ("email", "fraud-ml@example.com"),
        ("email", "lena@example.com"),
        ("email", admin_user.email),
        ("email", outsider.email),
    ]


@pytest.mark.django_db
def test_webhook_channel_adds_every_configured_url_and_email_channel_only_emails(own_system, lead):
    configure_notifications(webhook_urls=["https://hooks.example.com/a", "https://hooks.example.com/b"])
    incident = IncidentFactory(system=own_system)

    both = notification_targets(incident, {"notify": ["team"], "channels": ["email", "webhook"]})
    webhook_only = notification_targets(incident, {"notify": ["team"], "channels": ["webhook"]})

    assert both == [
        ("email", "lena@example.com"),
        ("webhook", "https://hooks.example.com/a"),
        ("webhook", "https://hooks.example.com/b"),
    ]
    assert [channel for channel, _ in webhook_only] == ["webhook", "webhook"]


def test_a_dedupe_key_too_long_for_its_column_hashes_the_target():
    url = "https://hooks.example.com/" + "x" * 400

    key = dedupe_key("escalation:abc:1", "webhook", url)

    assert len(key) <= 200
    assert key.endswith(hashlib.sha256(url.encode()).hexdigest())


@pytest.mark.django_db
def test_pending_notifications_are_listed_oldest_first(own_system):
    incident = IncidentFactory(system=own_system)
    first = notification(incident, target="a@example.com")
    second = notification(incident, target="b@example.com")
    Notification.objects.filter(pk=second.pk).update(status=NotificationStatus.SENT)

    assert notifications_pending() == [first.pk]


# --- email -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_email_is_sent_through_the_django_backend_once(own_system, settings):
    settings.VIGIL_EMAIL_FROM = "vigil@governance.example"
    incident = IncidentFactory(system=own_system, severity=Severity.HIGH)
    row = notification(incident)

    assert notification_deliver(notification_id=row.pk) == "sent"
    assert notification_deliver(notification_id=row.pk) == "sent"  # idempotent: not re-sent

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["lena@example.com"]
    assert message.from_email == "vigil@governance.example"
    assert message.subject.startswith("[high] Incident escalated to level 1")
    assert incident.title in message.body
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, "")
    assert row.sent_at is not None
    notified = IncidentEvent.objects.get(incident=incident, kind=IncidentEventKind.NOTIFIED)
    assert notified.data["target"] == "lena@example.com"


@pytest.mark.django_db
def test_a_registered_channel_delivers_its_rows(own_system, monkeypatch):
    delivered = []

    def send_to_chat(row):
        delivered.append(row.target)
        return _Attempt("sent")

    monkeypatch.setitem(CHANNEL_SENDERS, "email", send_to_chat)  # stands in for a new channel's sender
    row = notification(IncidentFactory(system=own_system))

    assert notification_deliver(notification_id=row.pk) == "sent"
    assert delivered == ["lena@example.com"]
    assert not mail.outbox


@pytest.mark.django_db
def test_a_row_of_a_channel_nobody_installed_is_refused_not_retried(own_system, monkeypatch):
    monkeypatch.delitem(CHANNEL_SENDERS, "email")
    row = notification(IncidentFactory(system=own_system))

    assert notification_deliver(notification_id=row.pk) == "refused"
    row.refresh_from_db()
    assert "no delivery channel" in row.last_error


@pytest.mark.django_db
def test_an_smtp_failure_is_recorded_and_raised_for_a_retry(own_system, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 1  # nothing listens
    row = notification(IncidentFactory(system=own_system))

    with pytest.raises(NotificationTransientError):
        notification_deliver(notification_id=row.pk)

    row.refresh_from_db()
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error.startswith("email: ")


# --- webhooks ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_webhook_is_posted_as_signed_json_to_an_allowed_local_host(own_system, receiver, webhook_secret):
    configure_notifications(allowed_hosts=["127.0.0.1"])
    incident = IncidentFactory(system=own_system)
    row = notification(incident, channel="webhook", target=receiver.url)

    assert notification_deliver(notification_id=row.pk) == "sent"

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    expected = "sha256=" + hmac.new(SECRET.encode(), request["body"], hashlib.sha256).hexdigest()
    assert request["headers"]["X-Vigil-Signature"] == expected
    assert request["headers"]["Content-Type"] == "application/json"
    document = json.loads(request["body"])
    assert document["timestamp"] == int(request["headers"]["X-Vigil-Timestamp"])
    assert document["incident"]["id"] == str(incident.pk)
    assert (document["id"], document["kind"]) == (str(row.pk), "escalation")
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("sent", 1)


@pytest.mark.django_db
def test_a_tampered_body_does_not_match_the_signature(own_system, receiver, webhook_secret):
    configure_notifications(allowed_hosts=["127.0.0.1"])
    notification_deliver(notification_id=notification(IncidentFactory(system=own_system), channel="webhook",
                                                       target=receiver.url).pk)  # fmt: skip
    request = receiver.requests[0]
    tampered = request["body"].replace(b'"level":1', b'"level":9')

    assert tampered != request["body"]
    assert request["headers"]["X-Vigil-Signature"] != (
        "sha256=" + hmac.new(SECRET.encode(), tampered, hashlib.sha256).hexdigest()
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "10.1.2.3", "192.168.0.10", "172.16.8.1", "169.254.169.254", "[::1]", "[fe80::1]", "0.0.0.0"],  # noqa: S104 (a target, not a bind)
)
def test_a_webhook_to_a_private_loopback_or_link_local_address_is_refused_without_a_request(
    own_system, host, monkeypatch
):
    calls = []
    monkeypatch.setattr(requests, "post", lambda *args, **kwargs: calls.append(args))
    configure_notifications()
    row = notification(IncidentFactory(system=own_system), channel="webhook", target=f"http://{host}:8080/hook")

    assert notification_deliver(notification_id=row.pk) == "refused"
    assert notification_deliver(notification_id=row.pk) == "refused"  # final: never attempted again

    assert calls == []
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("refused", 1)
    assert "address" in row.last_error
    refused = IncidentEvent.objects.get(incident=row.incident, kind=IncidentEventKind.NOTIFIED)
    assert refused.message.startswith("Refused to notify")


@pytest.mark.django_db
def test_the_local_receiver_gets_nothing_when_loopback_is_not_allowed(own_system, receiver):
    configure_notifications()
    row = notification(IncidentFactory(system=own_system), channel="webhook", target=receiver.url)

    assert notification_deliver(notification_id=row.pk) == "refused"
    assert receiver.requests == []


@pytest.mark.django_db
def test_allow_private_targets_lets_a_private_target_through(own_system, receiver, webhook_secret):
    configure_notifications(allow_private_targets=True)
    row = notification(IncidentFactory(system=own_system), channel="webhook", target=receiver.url)

    assert notification_deliver(notification_id=row.pk) == "sent"
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_a_5xx_answer_is_a_failure_worth_a_retry_and_a_later_success_sends(own_system, receiver, webhook_secret):
    configure_notifications(allowed_hosts=["127.0.0.1"])
    row = notification(IncidentFactory(system=own_system), channel="webhook", target=receiver.url)
    receiver.status = 503

    with pytest.raises(NotificationTransientError):
        notification_deliver(notification_id=row.pk)
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == ("failed", 1, "webhook: HTTP 503")

    receiver.status = 200
    assert notification_deliver(notification_id=row.pk) == "sent"
    row.refresh_from_db()
    assert (row.attempts, row.last_error) == (2, "")


@pytest.mark.django_db
def test_a_4xx_answer_fails_without_a_retry(own_system, receiver, webhook_secret):
    configure_notifications(allowed_hosts=["127.0.0.1"])
    row = notification(IncidentFactory(system=own_system), channel="webhook", target=receiver.url)
    receiver.status = 403

    assert notification_deliver(notification_id=row.pk) == "failed"


@pytest.mark.django_db
def test_the_delivery_task_retries_network_errors_but_not_refusals(own_system, monkeypatch):
    configure_notifications(allowed_hosts=["hooks.example.com"])
    attempts = []

    def unreachable(*args, **kwargs):
        attempts.append(args[0])
        raise requests.ConnectionError("connection refused")

    monkeypatch.setattr(requests, "post", unreachable)
    incident = IncidentFactory(system=own_system)
    flaky = notification(incident, channel="webhook", target="https://hooks.example.com/vigil")
    private = notification(incident, channel="webhook", target="http://10.0.0.7/vigil")

    with pytest.raises(Retry):  # eager mode surfaces the scheduled retry instead of sleeping through it
        deliver_notification.apply(args=[str(flaky.pk)])
    refused = deliver_notification.apply(args=[str(private.pk)])

    assert refused.get() == "refused"
    assert attempts == ["https://hooks.example.com/vigil"]  # the private target was never requested
    flaky.refresh_from_db()
    assert (flaky.status, flaky.attempts) == ("failed", 1)
    assert deliver_notification.max_retries >= 3 and deliver_notification.retry_backoff


# --- the URL check ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://hooks.example.com/x", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("https://token@hooks.example.com/x", "credentials"),
        ("https:///nohost", "no host"),
        ("http://[::ffff:127.0.0.1]/x", "loopback"),
        ("http://100.64.1.1/x", "not a public"),
        ("http://224.0.0.1/x", "multicast"),
    ],
)
def test_the_url_check_names_what_is_wrong(url, fragment):
    assert fragment in (webhook_url_check(url, settings=OPEN_CONFIG) or "")


def test_a_public_address_passes_the_check():
    assert webhook_url_check("https://93.184.215.14/hook", settings=OPEN_CONFIG) is None
    assert webhook_url_check("https://[2606:4700:4700::1111]/hook", settings=OPEN_CONFIG) is None


def test_a_host_name_resolving_to_a_private_address_is_refused(monkeypatch):
    def resolve(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.20.30.40", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)

    reason = webhook_url_check("https://internal.example.com/hook", settings=OPEN_CONFIG)

    assert reason is not None and "10.20.30.40" in reason


def test_allowed_hosts_skip_the_address_check(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: pytest.fail("allowed hosts are not resolved"))

    assert webhook_url_check("https://Internal.Example.com./hook",
                             settings={**OPEN_CONFIG, "allowed_hosts": ["internal.example.com"]}) is None  # fmt: skip


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """The oracle: a target is callable only if it is a globally routable unicast address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (address.is_multicast or address.is_reserved)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(address=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)))
@example(address=ipaddress.ip_address("169.254.169.254"))
@example(address=ipaddress.ip_address("::ffff:10.0.0.1"))
@example(address=ipaddress.ip_address("fd00::1"))
def test_any_address_a_host_resolves_to_is_refused_unless_it_is_public(address, monkeypatch):
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: [(family, 1, 6, "", (str(address), port))])

    reason = webhook_url_check("https://hooks.example.com/vigil", settings=OPEN_CONFIG)

    assert (reason is None) == _public(address), reason


@settings(max_examples=200)
@given(network=st.sampled_from(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
                                "fc00::/7", "fe80::/10"]), data=st.data())  # fmt: skip
def test_every_address_of_the_private_ranges_is_refused_as_a_literal(network, data):
    address = data.draw(st.ip_addresses(network=network))
    host = f"[{address}]" if address.version == 6 else str(address)

    assert webhook_url_check(f"https://{host}/hook", settings=OPEN_CONFIG) is not None


# --- the outbox through escalation -----------------------------------------------------------------


@pytest.mark.django_db
def test_an_escalation_queues_one_row_per_target_that_delivery_then_sends(own_system, lead, time_machine):
    from incidents.services.escalation import escalate_due_incidents

    start = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
    time_machine.move_to(start, tick=False)
    incident = IncidentFactory(system=own_system, severity=Severity.HIGH)
    time_machine.move_to(start + timedelta(minutes=15), tick=False)

    escalate_due_incidents()
    pending = notifications_pending()
    for notification_id in pending:
        notification_deliver(notification_id=notification_id)

    assert len(pending) == 1
    assert Notification.objects.get(incident=incident).dedupe_key == (
        f"escalation:{incident.pk}:1:email:lena@example.com"
    )
    assert [message.to for message in mail.outbox] == [["lena@example.com"]]


# --- batches and the outbox insert -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_batch_goes_on_past_a_transient_failure_and_hands_that_row_back_for_a_retry(own_system, monkeypatch):
    configure_notifications(allowed_hosts=["hooks.example.com"])

    def unreachable(*args, **kwargs):
        raise requests.Timeout("read timed out")

    monkeypatch.setattr(requests, "post", unreachable)
    incident = IncidentFactory(system=own_system)
    flaky = notification(incident, channel="webhook", target="https://hooks.example.com/vigil")
    email = notification(incident, target="lena@example.com")
    private = notification(incident, channel="webhook", target="http://192.168.1.20/vigil")

    batch = notifications_deliver(notification_ids=[flaky.pk, email.pk, private.pk])

    assert batch.statuses == {"failed": 1, "sent": 1, "refused": 1}
    assert batch.to_retry == [str(flaky.pk)]
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_the_batch_task_delivers_every_row_it_is_given(own_system):
    incident = IncidentFactory(system=own_system)
    rows = [notification(incident, target=f"person{n}@example.com") for n in range(3)]

    result = deliver_notifications.delay([str(row.pk) for row in rows]).get()

    assert result == {"sent": 3, "retrying": 0}
    assert sorted(message.to[0] for message in mail.outbox) == [f"person{n}@example.com" for n in range(3)]


@pytest.mark.django_db
def test_storing_a_notification_whose_key_exists_adds_nothing(own_system, is_postgres):
    incident = IncidentFactory(system=own_system)
    first = notification_build(
        incident_id=incident.pk, channel="email", target="lena@example.com", kind="escalation", subject="Escalated",
        payload={"message": "Escalated."}, key="escalation:x:1:email:lena@example.com",
    )  # fmt: skip
    second = {**first, "subject": "Escalated again"}

    assert notifications_store([first]) == 1
    stored_again = notifications_store([second, second])

    assert Notification.objects.get().subject == "Escalated"
    if is_postgres:  # ON CONFLICT DO NOTHING reports what it inserted
        assert stored_again == 0
