"""One error envelope for every 4xx/5xx.

`{"error": {"code", "message", "fields"?}, "request_id"}`
"""

from __future__ import annotations

import logging
import sys
from html import escape
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import (
    DatabaseError,
    DataError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    connection,
)
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core.context import current_request_id

logger = logging.getLogger(__name__)

# Paths answered by machines: their errors are JSON, never HTML.
API_PREFIXES = ("/api/", "/v2/", "/openai/")

# The database went away (restart, failover, a connection cut mid-query): a retryable
# 503, not a 500. Django wraps psycopg's errors in these two classes.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 5


class ApplicationError(Exception):
    """A domain error with a machine code; services raise subclasses of this."""

    code = "application_error"
    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: dict[str, list[str]] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.fields = fields
        if status_code is not None:
            self.status_code = status_code


class NotFoundError(ApplicationError):
    code = "not_found"
    status_code = status.HTTP_404_NOT_FOUND


class ConflictError(ApplicationError):
    code = "conflict"
    status_code = status.HTTP_409_CONFLICT


def envelope(
    code: str, message: str, fields: Any = None, request_id: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error, "request_id": request_id or current_request_id()}


def _flatten_fields(detail: Any) -> dict[str, list[str]]:
    """DRF's nested detail -> {"a.b": ["msg", ...]} so that every field is named."""
    out: dict[str, list[str]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        elif (
            isinstance(value, list)
            and value
            and not all(isinstance(v, str) for v in value)
        ):
            for index, sub in enumerate(value):
                walk(f"{prefix}.{index}" if prefix else str(index), sub)
        else:
            messages = value if isinstance(value, list) else [value]
            out.setdefault(prefix or "non_field_errors", []).extend(
                str(m) for m in messages
            )

    walk("", detail)
    return out


_DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "parse_error",
}


def _invalid_message(fields: dict[str, list[str]]) -> str:
    """One line naming each bad field with its first complaint."""
    if not fields:
        return "Invalid input."
    parts = [
        f"{name} ({messages[0].rstrip('.')})"
        for name, messages in sorted(fields.items())
    ]
    shown = "; ".join(parts[:5]) + ("; ..." if len(parts) > 5 else "")
    return f"Invalid input: {shown}."


UNKNOWN_HOST = "No organisation is served at this host."


def _unknown_host_body() -> dict[str, Any]:
    return envelope("unknown_host", UNKNOWN_HOST)


def _unavailable_body() -> dict[str, Any]:
    return envelope(
        "service_unavailable",
        "The service is briefly unavailable (database unreachable); retry shortly.",
    )


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error leaves in the envelope."""
    if isinstance(exc, ApplicationError):
        return Response(
            envelope(exc.code, exc.message, exc.fields), status=exc.status_code
        )
    if tenant_gone(exc):
        return Response(
            _unknown_host_body(),
            status=status.HTTP_404_NOT_FOUND,
        )
    if isinstance(exc, DATABASE_UNAVAILABLE):
        logger.warning("database unavailable: %s", exc.__class__.__name__)
        return Response(
            _unavailable_body(),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    elif isinstance(exc, DataError):
        # A value the database cannot hold, e.g. a filter's timestamp with a +17:26
        # offset (PostgreSQL allows +-15:59): bad input, not a server error (found by API fuzzing).
        exc = exceptions.ValidationError(
            {"query": ["A value is outside the range the database accepts."]}
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # unexpected: Django's 500 handler answers in the envelope
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten_fields(exc.detail)
        response.data = envelope("invalid", _invalid_message(fields), fields)
    else:
        code = next(
            (c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)),
            getattr(exc, "default_code", "error"),
        )
        detail = getattr(exc, "detail", str(exc))
        response.data = envelope(code, str(detail))
    return response


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES)


def service_unavailable(request: HttpRequest) -> HttpResponse:
    """503 with Retry-After: the envelope on API paths, a plain page elsewhere. Touches
    neither the database nor templates' context processors."""
    if _is_api(request):
        response: HttpResponse = JsonResponse(_unavailable_body(), status=503)
    else:
        response = HttpResponse(
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            "<title>Unavailable · ModelHub</title></head>\n"
            '<body style="font-family: system-ui, sans-serif; margin: 3rem;">'
            "<h1>Briefly unavailable</h1><p>Please retry in a few seconds.</p>"
            f"<p>Request id: <code>{escape(current_request_id() or '')}</code></p>"
            "</body></html>\n",
            status=503,
        )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def tenant_gone(exc: BaseException | None) -> bool:
    """Whether a query failed because the request's tenant was deleted after this
    process looked its host up (hosts are remembered for TENANT_HOST_CACHE_SECONDS):
    its schema no longer exists. If so, the process forgets every host at once.
    The answer is kept on the exception: DRF's handler, the middleware and
    handler500 may each ask about the same one."""
    if not isinstance(exc, ProgrammingError) or connection.in_atomic_block:
        return False
    known = getattr(exc, "_tenant_gone", None)
    if known is None:
        known = _schema_gone()
        exc._tenant_gone = known  # type: ignore[attr-defined]
    return bool(known)


def _schema_gone() -> bool:
    from django_tenants.utils import schema_exists

    from apps.core.db import current_schema, is_public_schema

    schema = current_schema()
    if is_public_schema(schema):
        return False
    try:
        if schema_exists(schema):
            return False
    except DatabaseError:
        return False
    from apps.core.middleware import forget_tenant_hosts

    forget_tenant_hosts()
    return True


def tenant_gone_response(request: HttpRequest) -> HttpResponse:
    """404 for a host whose organisation was just deleted: the envelope on API paths,
    a plain page elsewhere (its schema is gone, so no template context processors)."""
    if _is_api(request):
        return JsonResponse(
            _unknown_host_body(),
            status=404,
        )
    return HttpResponse(
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Not found · ModelHub</title></head>\n"
        '<body style="font-family: system-ui, sans-serif; margin: 3rem;">'
        f"<h1>Not found</h1><p>{UNKNOWN_HOST}</p>"
        "</body></html>\n",
        status=404,
    )


def _page(request: HttpRequest, template: str, status_code: int) -> HttpResponse:
    response = TemplateResponse(
        request, template, {"request_id": current_request_id()}, status=status_code
    )
    response.render()
    return response


def handler400(
    request: HttpRequest, exception: Exception | None = None
) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(envelope("bad_request", "Bad request."), status=400)
    return _page(request, "errors/400.html", 400)


def handler403(
    request: HttpRequest, exception: Exception | None = None
) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(
            envelope("permission_denied", "You may not do this."), status=403
        )
    return _page(request, "errors/403.html", 403)


def handler404(
    request: HttpRequest, exception: Exception | None = None
) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(envelope("not_found", "Not found."), status=404)
    return _page(request, "errors/404.html", 404)


def tenant_not_found(request: HttpRequest) -> HttpResponse:
    """No organisation owns this host name."""
    if _is_api(request):
        return JsonResponse(
            _unknown_host_body(),
            status=404,
        )
    return _page(request, "errors/404.html", 404)


def handler500(request: HttpRequest) -> HttpResponse:
    # Django calls this while the uncaught exception is being handled: a database
    # that went away (also under a middleware, e.g. the tenant lookup) is a 503.
    if isinstance(sys.exc_info()[1], DATABASE_UNAVAILABLE):
        return service_unavailable(request)
    if tenant_gone(sys.exc_info()[1]):
        return tenant_gone_response(request)
    if _is_api(request):
        return JsonResponse(
            envelope("server_error", "Internal server error."), status=500
        )
    # No template context processors here: the database may be what failed.
    from django.template import loader

    body = loader.get_template("errors/500.html").render(
        {"request_id": current_request_id()}
    )
    return HttpResponse(body, status=500)
