"""Domain errors raised under a page become a page with their status and message,
never a 500 (API paths already get the JSON envelope from DRF's handler). A database
that went away is a 503 with Retry-After, on pages and API paths alike."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse

from apps.core.context import current_request_id
from apps.core.errors import (
    API_PREFIXES,
    DATABASE_UNAVAILABLE,
    ApplicationError,
    envelope,
    service_unavailable,
    tenant_gone,
    tenant_gone_response,
)


class ApplicationErrorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(
        self, request: HttpRequest, exc: Exception
    ) -> HttpResponse | None:
        if isinstance(exc, DATABASE_UNAVAILABLE):
            return service_unavailable(request)
        if tenant_gone(exc):
            return tenant_gone_response(request)
        if not isinstance(exc, ApplicationError):
            return None
        if request.path.startswith(API_PREFIXES):
            return JsonResponse(
                envelope(exc.code, exc.message, exc.fields), status=exc.status_code
            )
        response = TemplateResponse(
            request,
            "errors/application.html",
            {"error": exc, "request_id": current_request_id()},
            status=exc.status_code,
        )
        response.render()
        return response
