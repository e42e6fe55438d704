"""The API error envelope: ``{"error": {"code", "message", "fields"}}`` for every error answer."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class TooManyIds(PayloadTooLarge):
    """413 naming the list that holds more ids than one request may carry."""

    def __init__(self, field: str, count: int, limit: int):
        self.fields = {field: [f"{count:,} ids; at most {limit:,} per request (split the request)"]}
        super().__init__(detail=self.fields[field][0])


class FieldConflict(Conflict):
    """A 409 that names the fields in conflict (e.g. a unique name already taken)."""

    def __init__(self, fields: dict[str, list[str]], message: str | None = None):
        self.fields = fields
        super().__init__(detail=message or next(iter(fields.values()))[0])


def error_body(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as ``{"events.3.severity": ["..."]}`` (dotted paths, list indexes)."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            out.update(flatten_errors(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            if detail:
                out[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                if item:
                    out.update(flatten_errors(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


def _codes(detail: Any) -> set[str]:
    if isinstance(detail, dict):
        return set().union(*(_codes(v) for v in detail.values())) if detail else set()
    if isinstance(detail, list):
        return set().union(*(_codes(v) for v in detail)) if detail else set()
    return {getattr(detail, "code", "invalid")}


def _from_django(exc: Exception) -> Exception:
    if isinstance(exc, IntegrityError):
        # A race the serializer's checks could not see (two requests creating the same name at once):
        # the transaction rolled back, nothing was written.
        logger.warning("integrity error answered as 409: %s", exc)
        return Conflict("The request conflicts with data written at the same time (e.g. a duplicate name); retry.")
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge()
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied()
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return exceptions.ValidationError(detail=detail)
    return exc


def vigil_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    exc = _from_django(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # unhandled: Django's handler500 answers (JSON for /api/) and the error is counted
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_errors(exc.detail)
        if _codes(exc.detail) == {"unique"}:
            response.status_code = status.HTTP_409_CONFLICT
            first_field, messages = next(iter(fields.items()))
            response.data = error_body("conflict", f"{first_field}: {messages[0]}", fields)
        else:
            first_field, messages = next(iter(fields.items()), ("", ["Invalid input."]))
            message = f"Invalid input: {first_field}: {messages[0]}" if first_field else messages[0]
            response.data = error_body("validation_error", message, fields)
        return response
    detail = getattr(exc, "detail", None)
    if isinstance(detail, dict) and "detail" in detail:  # simplejwt's InvalidToken carries a dict
        message = str(detail["detail"])
    elif isinstance(detail, list | dict):
        message = "; ".join(f"{k}: {v[0]}" for k, v in flatten_errors(detail).items())
    else:
        message = str(detail) if detail is not None else str(exc)
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    if not isinstance(code, str):
        code = getattr(exc, "default_code", "error")
    if response.status_code == status.HTTP_401_UNAUTHORIZED and code in {"token_not_valid", "user_not_found"}:
        code = "authentication_failed"
    if isinstance(exc, exceptions.Throttled):
        code, message = "rate_limited", _throttled_message(context, message)
    response.data = error_body(code, message, getattr(exc, "fields", None))
    return response


def _throttled_message(context: dict[str, Any], fallback: str) -> str:
    """Name the limit that was hit (the decision is left on the request by ``VigilRateThrottle``)."""
    from governance.api.throttling import DECISION_ATTRIBUTE, rate_limit_message

    request = context.get("request")
    decision = getattr(getattr(request, "_request", request), DECISION_ATTRIBUTE, None)
    return rate_limit_message(decision) if decision is not None else fallback


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def json_not_found(request: HttpRequest, exception: Exception | None = None):
    if _is_api(request):
        return JsonResponse(error_body("not_found", f"No endpoint at {request.path}."), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def json_server_error(request: HttpRequest):
    if _is_api(request):
        return JsonResponse(error_body("server_error", "Internal server error; it has been logged."), status=500)
    from django.views.defaults import server_error

    return server_error(request)
