"""The inventory of URL endpoints, for coverage figures (access control, observability, rate limits)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.permissions import AllowAny

from tasks.middleware import normalize_route

# Endpoints that are public on purpose: obtaining tokens, the API description, health probes, and the
# Prometheus scrape (optionally protected by METRICS_BEARER_TOKEN).
PUBLIC_ENDPOINTS = frozenset(
    {
        "api:token_obtain",
        "api:token_refresh",
        "api:token_revoke",
        "api-schema",
        "api-docs",
        "healthz",
        "readyz",
        "prometheus-metrics",
    }
)


@dataclass(frozen=True)
class Endpoint:
    route: str  # normalized, e.g. "/api/v1/systems/{pk}"
    name: str  # URL name, e.g. "api:aisystem-detail"
    view: object

    @property
    def is_api(self) -> bool:
        return self.route.startswith("/api/v1/")

    @property
    def requires_authentication(self) -> bool:
        """True when a DRF view has no AllowAny permission (unknown views are treated as open)."""
        view_class = getattr(self.view, "cls", None)
        if view_class is None:
            return False
        classes = getattr(view_class, "permission_classes", [])
        return bool(classes) and not any(issubclass(cls, AllowAny) for cls in classes if isinstance(cls, type))


def _walk(patterns, prefix: str = "", namespace: str = "") -> Iterator[Endpoint]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            ns = namespace
            if pattern.namespace:
                ns = f"{namespace}:{pattern.namespace}" if namespace else pattern.namespace
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), ns)
        elif isinstance(pattern, URLPattern):
            name = pattern.name or ""
            full_name = f"{namespace}:{name}" if namespace and name else name
            route = normalize_route(prefix + str(pattern.pattern))
            yield Endpoint(route=route, name=full_name, view=pattern.callback)


def iter_endpoints() -> Iterator[Endpoint]:
    """Every URL pattern of the project, admin included, de-duplicated by route and name."""
    seen = set()
    for endpoint in _walk(get_resolver().url_patterns):
        key = (endpoint.route, endpoint.name)
        if key not in seen:
            seen.add(key)
            yield endpoint


def api_endpoints() -> list[Endpoint]:
    return [e for e in iter_endpoints() if e.is_api and ".(?P<format>" not in e.route]
