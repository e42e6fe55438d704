"""Every URL pattern is rate limited (API views by the Vigil throttle), except the documented exemptions."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver

from governance.api.throttling import VigilRateThrottle, rate_limit_coverage
from governance.services.kpis import kpi_report
from governance.services.ratelimit import RATE_LIMIT_EXEMPT


def walk(patterns, prefix: str = ""):
    """(route, url name, view callback) for every pattern, found through the real resolver."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.name, pattern.callback


def throttled(callback) -> bool:
    view_class = getattr(callback, "cls", None)
    return any(
        isinstance(cls, type) and issubclass(cls, VigilRateThrottle)
        for cls in getattr(view_class, "throttle_classes", ())
    )


def api_patterns():
    return [
        (route, name, view)
        for route, name, view in walk(get_resolver().url_patterns)
        if route.lstrip("^").startswith("api/v1/")
    ]


def test_every_api_endpoint_passes_the_vigil_throttle():
    patterns = api_patterns()
    unlimited = sorted({route for route, _, view in patterns if not throttled(view)})

    assert len(patterns) > 50  # the walk really found the API
    assert unlimited == []


def test_the_auth_token_views_inherit_the_throttle():
    names = {name: view for _, name, view in api_patterns()}
    for name in ("token_obtain", "token_refresh", "token_revoke"):
        assert throttled(names[name]), name


def test_the_walk_would_catch_an_unlimited_view():
    from rest_framework.views import APIView

    class Unlimited(APIView):
        throttle_classes = ()

    assert not throttled(Unlimited.as_view())
    assert throttled(APIView.as_view())


def test_only_the_documented_probes_are_outside_the_limiter():
    names = {name for _, name, _ in walk(get_resolver().url_patterns)}
    assert names >= RATE_LIMIT_EXEMPT
    limited, total, unlimited = rate_limit_coverage()
    assert unlimited == [] and limited == total > 0


@pytest.mark.django_db
def test_kpi_reports_full_coverage_from_the_real_url_list():
    item = next(k for k in kpi_report()["kpis"] if k["code"] == "rate_limit_coverage")
    limited, total, _ = rate_limit_coverage()

    assert item["status"] == "met"
    assert item["value"] == 100.0
    assert item["display"] == f"100% ({limited}/{total})"


@pytest.mark.django_db
def test_kpi_names_uncovered_routes_when_the_admin_middleware_is_missing(settings):
    middleware = [m for m in settings.MIDDLEWARE if m != "governance.api.throttling.RateLimitMiddleware"]
    with override_settings(MIDDLEWARE=middleware):
        item = next(k for k in kpi_report()["kpis"] if k["code"] == "rate_limit_coverage")

    assert item["status"] == "not_met"
    assert "/admin" in item["detail"]
    assert item["value"] < 100
