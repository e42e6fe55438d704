"""Request guards that must run before any view parses a body."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from governance.api.errors import error_body


class RequestBodyLimitMiddleware:
    """Answer 413 (JSON envelope) for API requests whose declared body exceeds ``API_MAX_BODY_BYTES``.

    Bodies without a Content-Length (chunked) are still capped by ``DATA_UPLOAD_MAX_MEMORY_SIZE`` when
    the view reads them; the API exception handler turns that into the same 413.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return JsonResponse(error_body("parse_error", "Content-Length is not a number."), status=400)
            limit = settings.API_MAX_BODY_BYTES
            if length > limit:
                return JsonResponse(
                    error_body(
                        "request_too_large",
                        f"Request body is {length} bytes; the limit is {limit} bytes.",
                        {"body": [f"at most {limit} bytes"]},
                    ),
                    status=413,
                )
        return self.get_response(request)
