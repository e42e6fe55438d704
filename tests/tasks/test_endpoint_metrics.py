"""Every HTTP request is recorded as an endpoint function named by method and route template."""

from __future__ import annotations

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from tasks import metrics
from tasks.middleware import endpoint_name, normalize_route
from tasks.models import FunctionKind
from tests.factories import AISystemFactory
from tests.tasks.recorded import recorded

ERROR_URLS = pytest.mark.urls("tests.tasks.urls_for_errors")


def recorded_names() -> set[str]:
    return {aggregate.function_name for aggregate in metrics.recorder.pending()}


@pytest.fixture
def lenient_client():
    """A test client that answers 500 instead of re-raising the view's exception."""
    return Client(raise_request_exception=False)


# --- The middleware ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_detail_request_is_recorded_under_its_route_template_not_its_url(viewer, team, client_for):
    system = AISystemFactory(team=team, name="fraud-scorer")
    client = client_for(viewer)

    assert client.get(f"/api/v1/systems/{system.pk}").status_code == 200
    assert client.get("/api/v1/systems/fraud-scorer").status_code == 200

    detail = recorded("GET /api/v1/systems/{pk}")
    assert detail.kind == FunctionKind.ENDPOINT
    assert detail.invocations == 2
    assert detail.errors == 0
    assert detail.cold_starts == 1
    assert not any(str(system.pk) in name or "fraud-scorer" in name for name in recorded_names())


@pytest.mark.django_db
def test_the_query_string_is_not_part_of_the_endpoint_name(viewer, client_for):
    client_for(viewer).get("/api/v1/systems", {"name": "fraud"})
    client_for(viewer).get("/api/v1/systems/")

    assert recorded("GET /api/v1/systems").invocations == 2


@pytest.mark.django_db
def test_the_method_is_part_of_the_endpoint_name(viewer, client_for):
    client = client_for(viewer)
    client.get("/api/v1/systems")
    client.post("/api/v1/systems", {"name": "not-allowed"})  # a viewer may not write: 403

    assert recorded("GET /api/v1/systems").invocations == 1
    assert recorded("POST /api/v1/systems").invocations == 1
    assert recorded("POST /api/v1/systems").errors == 0


def test_requests_for_unknown_urls_share_one_unresolved_name(anon_client):
    assert anon_client.get("/no/such/page").status_code == 404
    assert anon_client.get("/api/v1/no-such-endpoint/42").status_code == 404

    unresolved = recorded("GET <unresolved>")
    assert unresolved.invocations == 2
    assert unresolved.errors == 0
    assert recorded_names() == {"GET <unresolved>"}


@ERROR_URLS
def test_an_unhandled_view_exception_is_counted_by_its_class_name(lenient_client):
    assert lenient_client.get("/probe/explode/1").status_code == 500
    assert lenient_client.get("/probe/explode/2").status_code == 500

    exploded = recorded("GET /probe/explode/{attempt}")
    assert exploded.invocations == 2
    assert exploded.errors == 2
    assert exploded.errors_by_type == {"ProbeExplosion": 2}


@ERROR_URLS
@pytest.mark.django_db  # like every API view, the probe passes the DB-backed rate limiter first
def test_an_unhandled_exception_in_an_api_view_is_counted_by_its_class_name(lenient_client):
    assert lenient_client.get("/api/probe/abc").status_code == 500

    assert recorded("GET /api/probe/{pk}").errors_by_type == {"ProbeExplosion": 1}


@ERROR_URLS
def test_a_5xx_answer_is_an_error_named_after_its_status(lenient_client):
    assert lenient_client.get("/probe/unavailable").status_code == 503

    unavailable = recorded("GET /probe/unavailable")
    assert unavailable.errors == 1
    assert unavailable.errors_by_type == {"HTTP503": 1}


@ERROR_URLS
def test_a_4xx_answer_is_the_callers_mistake_not_an_error_of_the_endpoint(lenient_client):
    assert lenient_client.get("/probe/bad-request").status_code == 400

    bad_request = recorded("GET /probe/bad-request")
    assert bad_request.invocations == 1
    assert bad_request.errors == 0


@pytest.mark.django_db
def test_api_refusals_and_misses_are_not_errors(anon_client, viewer, client_for):
    assert anon_client.get("/api/v1/systems").status_code == 401
    assert client_for(viewer).get("/api/v1/systems/no-such-system").status_code == 404

    assert recorded("GET /api/v1/systems").errors == 0
    assert recorded("GET /api/v1/systems/{pk}").errors == 0


@pytest.mark.django_db
def test_a_request_refused_before_routing_is_still_recorded_under_its_route(viewer, client_for, settings):
    settings.API_MAX_BODY_BYTES = 10

    response = client_for(viewer).post("/api/v1/systems", {"name": "x" * 50}, format="json")

    assert response.status_code == 413
    assert recorded("POST /api/v1/systems").invocations == 1
    assert recorded("POST /api/v1/systems").errors == 0


# --- Route normalization -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ("api/v1/systems/(?P<pk>[^/]+)/?$", "/api/v1/systems/{pk}"),  # DRF router, as Django joins it
        ("api/v1/^systems/(?P<pk>[^/.]+)/?$", "/api/v1/systems/{pk}"),  # with the router's own anchor
        ("api/v1/^teams/?$", "/api/v1/teams"),
        ("api/v1/^auth/token/refresh/?$", "/api/v1/auth/token/refresh"),
        ("api/v1/config/<str:key>", "/api/v1/config/{key}"),  # path() converters
        ("api/v1/config/<key>/history", "/api/v1/config/{key}/history"),
        ("^items/(?P<pk>(ab|cd)+)/(?P<part>\\d{2})/$", "/items/{pk}/{part}"),  # nested groups, quantifiers
        ("^files/(?P<name>[^)]*\\))/?$", "/files/{name}"),  # an escaped parenthesis inside the group
        ("^report\\.csv$", "/report.csv"),
        ("admin/", "/admin"),
        ("metrics", "/metrics"),
        ("", "/"),
        ("^$", "/"),
    ],
)
def test_normalize_route_makes_a_readable_path_template(route, expected):
    assert normalize_route(route) == expected


def test_endpoint_name_is_method_and_route_template():
    assert endpoint_name("PATCH", "api/v1/systems/(?P<pk>[^/]+)/?$") == "PATCH /api/v1/systems/{pk}"


ROUTE_ALPHABET = st.sampled_from(list("/^$?()<>:\\[].+*|PpkA-z0_") + ["(?P<", "(?P<pk>", "<int:", "/?$"])


@given(route=st.one_of(st.text(), st.lists(ROUTE_ALPHABET, max_size=40).map("".join)))
def test_normalize_route_never_raises_and_always_gives_an_absolute_path(route):
    normalized = normalize_route(route)

    assert normalized.startswith("/")
    assert "//" not in normalized
