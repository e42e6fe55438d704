"""Function metrics for every HTTP endpoint."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import lru_cache

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, ResolverMatch, resolve

from tasks import metrics
from tasks.models import FunctionKind

_ENDPOINT = FunctionKind.ENDPOINT.value
_NAMED_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>")
_CONVERTER = re.compile(r"<(?:\w+:)?(?P<name>\w+)>")


def _strip_group(pattern: str, start: int) -> int:
    """Index just past the regex group opening at ``start`` (nested parentheses, escapes and character
    classes such as ``[^)]`` handled)."""
    depth, index, in_class = 0, start, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return index


def normalize_route(route: str) -> str:
    """A readable path for a URL route: ``/api/v1/teams/{pk}``.

    Accepts both ``path()`` routes (``config/<str:key>``) and the regexes DRF routers produce
    (``^teams/(?P<pk>[^/.]+)/?$``).
    """
    out, index = [], 0
    while index < len(route):
        match = _NAMED_GROUP.match(route, index)
        if match:
            out.append("{" + match.group("name") + "}")
            index = _strip_group(route, index)
            continue
        out.append(route[index])
        index += 1
    text = _CONVERTER.sub(lambda m: "{" + m.group("name") + "}", "".join(out))
    text = text.replace("^", "").replace("$", "").replace("/?", "/").replace("\\", "")
    text = re.sub(r"/+", "/", "/" + text)
    return text.rstrip("/") or "/"


@lru_cache(maxsize=4096)
def endpoint_name(method: str, route: str) -> str:
    """The function name of an endpoint in metrics: ``GET /api/v1/teams/{pk}``. Cached: routes are a fixed
    set, and normalizing one walks it character by character."""
    return f"{method} {normalize_route(route)}"


def _resolve(path: str) -> ResolverMatch | None:
    """The route of a request answered before URL resolution (e.g. a 413 from the body-size guard)."""
    try:
        return resolve(path)
    except Resolver404:
        return None


class FunctionMetricsMiddleware:
    """Times every request and records it under its route (unresolved URLs under ``<unresolved>``).

    Errors are unhandled exceptions (by class name) and 5xx responses (``HTTP5xx``); 4xx answers are
    the client's mistakes and are not counted as errors of the function.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self._record = metrics.recorder.record  # the per-process recorder, reset in place after a fork

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        latency_ms = (time.perf_counter() - started) * 1000
        match = request.resolver_match or _resolve(request.path_info)
        if match is None:
            name = f"{request.method} <unresolved>"
        else:
            name = endpoint_name(request.method or "GET", match.route)
        exception = getattr(request, "_vigil_exception", None)
        if exception is not None:
            error_type, message = type(exception).__name__, metrics.failure_message(exception)
        elif response.status_code >= 500:
            error_type, message = f"HTTP{response.status_code}", f"HTTP {response.status_code} response"
        else:
            self._record(name=name, kind=_ENDPOINT, latency_ms=latency_ms)
            return response
        self._record(
            name=name,
            kind=_ENDPOINT,
            latency_ms=latency_ms,
            error_type=error_type,
            error_message=message,
            path=request.path,
        )
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        request._vigil_exception = exception
        return None
